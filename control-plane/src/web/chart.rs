//! The tenant console's seat-usage chart: one bar per day, drawn as inline SVG by the server (no
//! script, no styles in attributes, so the page's strict CSP holds), with the same figures as a
//! table for screen readers and anyone who wants the numbers.

use maud::{Markup, html};

use crate::domain::seats::{DailyPeak, seats_phrase};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 170.0;
/// Room for the y-axis labels on the left and the dates below.
const LEFT: f64 = 30.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// The chart of `peaks` (oldest first) against the tenant's seat `limit`, with the `current`
/// count (seats held now, which today's peak is not once seats are released).
pub fn seat_usage(peaks: &[DailyPeak], current: u32, limit: u32) -> Markup {
    let highest = peaks.iter().map(|p| p.peak).max().unwrap_or(0);
    let scale_top = highest.max(limit).max(1);
    let plot_height = HEIGHT - BOTTOM - TOP;
    let y = |value: u32| TOP + plot_height * (1.0 - f64::from(value) / f64::from(scale_top));
    let slot = (WIDTH - LEFT) / peaks.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let summary = summary(peaks, current, limit);
    let first = peaks.first().map(|p| p.day.format("%-d %b").to_string()).unwrap_or_default();
    html! {
        figure class="chart" {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="usage-chart-title"
                xmlns="http://www.w3.org/2000/svg" {
                title id="usage-chart-title" { (summary) }
                line class="axis" x1=(LEFT) y1=(y(0)) x2=(WIDTH) y2=(y(0)) {}
                @for (index, peak) in peaks.iter().enumerate() {
                    @if peak.peak > 0 {
                        rect class="bar" x=(fmt(LEFT + slot * index as f64 + (slot - bar) / 2.0)) y=(fmt(y(peak.peak)))
                            width=(fmt(bar)) height=(fmt(y(0) - y(peak.peak))) {
                            title { (peak.day) ": " (seats_phrase(peak.peak)) }
                        }
                    }
                }
                line class="limit" x1=(LEFT) y1=(fmt(y(limit))) x2=(WIDTH) y2=(fmt(y(limit))) {}
                text x="2" y=(fmt(y(0))) { "0" }
                text x="2" y=(fmt(y(scale_top) + 10.0)) { (scale_top) }
                text x=(LEFT) y=(HEIGHT - 4.0) { (first) }
                text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { "today" }
            }
            figcaption { (summary) " The dashed line is your seat limit." }
        }
        details {
            summary { "Seats per day, as a table" }
            table class="data" {
                caption { "Most seats held each day, last " (peaks.len()) " days" }
                thead { tr { th scope="col" { "Day" } th scope="col" { "Seats" } } }
                tbody {
                    @for peak in peaks.iter().rev() {
                        tr { td { (peak.day) } td { (peak.peak) } }
                    }
                }
            }
        }
    }
}

/// One sentence: the period's peak, and the seats held now against the limit.
pub fn summary(peaks: &[DailyPeak], current: u32, limit: u32) -> String {
    let Some(today) = peaks.last() else { return "No seat usage recorded yet.".to_string() };
    let peak = peaks.iter().rev().max_by_key(|p| p.peak).unwrap_or(today);
    let days = if peaks.len() == 1 { "day".to_string() } else { format!("{} days", peaks.len()) };
    format!(
        "Seat usage over the last {days}: at most {} (on {}); {current} of {limit} held now.",
        seats_phrase(peak.peak),
        peak.day.format("%-d %B %Y"),
    )
}

/// Coordinates with one decimal: exact enough, and short.
fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn peaks(values: &[u32]) -> Vec<DailyPeak> {
        let start = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        values
            .iter()
            .enumerate()
            .map(|(i, &peak)| DailyPeak { day: start + chrono::Days::new(i as u64), peak })
            .collect()
    }

    #[test]
    fn one_bar_per_day_with_seats_and_the_limit_line() {
        let markup = seat_usage(&peaks(&[0, 1, 3, 2]), 2, 10).into_string();
        assert_eq!(markup.matches("<rect").count(), 3, "days without seats have no bar");
        assert!(markup.contains("2026-03-03: 3 seats"), "{markup}");
        assert!(markup.contains("2026-03-02: 1 seat<"), "one seat in the singular: {markup}");
        assert!(markup.contains("class=\"limit\""));
        assert_eq!(markup.matches("<tr>").count(), 5, "a header row and a row per day");
        assert!(!markup.contains("style="), "no inline styles under the CSP");
    }

    #[test]
    fn the_summary_names_the_peak_and_today() {
        assert_eq!(
            summary(&peaks(&[1, 4, 2]), 2, 5),
            "Seat usage over the last 3 days: at most 4 seats (on 2 March 2026); 2 of 5 held now."
        );
        assert_eq!(summary(&[], 0, 5), "No seat usage recorded yet.");
        assert_eq!(
            summary(&peaks(&[1]), 1, 1),
            "Seat usage over the last day: at most 1 seat (on 1 March 2026); 1 of 1 held now."
        );
    }

    #[test]
    fn after_the_last_seat_is_released_the_summary_says_none_are_held() {
        // Today's peak was one seat; it was released since: none is held now.
        let text = summary(&peaks(&[0, 1]), 0, 10);
        assert!(text.ends_with("; 0 of 10 held now."), "{text}");
    }

    #[test]
    fn bars_stay_inside_the_plot_when_usage_exceeds_the_limit() {
        // A plan change can leave more seats than the new limit allows for a while.
        let markup = seat_usage(&peaks(&[12]), 12, 10).into_string();
        let y: f64 = markup.split(" y=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!((TOP - 0.05..=HEIGHT).contains(&y), "bar top at {y}");
    }
}
