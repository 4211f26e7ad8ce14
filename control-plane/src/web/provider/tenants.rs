//! `GET /provider`: the totals per plan and the tenant table. The table is one GET form (search,
//! plan, state, sort) whose values every link of the page keeps; values that make no sense are
//! replaced by the defaults and said so on the page, never refused.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};

use super::{date, provider_admin, provisioning_label, query_pairs, query_string, query_value, state_label};
use crate::domain::money::Money;
use crate::domain::subscription::SubscriptionState;
use crate::http::AppState;
use crate::store::{Plan, Store, Tenant};
use crate::web::layout::{self, frame, page};
use crate::web::session::{CsrfToken, Session};
use crate::web::signup::format_money;

const PER_PAGE: u32 = 25;
/// Longer search text is cut: no name, address or email is longer than this is useful to type.
const MAX_SEARCH_CHARS: usize = 100;

/// The sortable columns: (sort key, header).
const SORTABLE: [(&str, &str); 5] = [
    ("name", "Tenant"),
    ("plan", "Plan"),
    ("state", "State"),
    ("seats", "Seats held / licensed"),
    ("created", "Created"),
];
/// The sort choices of the form: (sort key, what it is called there).
const SORT_CHOICES: [(&str, &str); 6] = [
    ("slug", "Address"),
    ("name", "Name"),
    ("plan", "Plan"),
    ("state", "State"),
    ("seats", "Seats held"),
    ("created", "Created"),
];

/// What the page was asked for, made sensible, and what was changed to make it so.
#[derive(Debug, Default)]
struct Listing {
    search: String,
    plan: Option<String>,
    state: Option<SubscriptionState>,
    sort: &'static str,
    descending: bool,
    page: u64,
    notes: Vec<String>,
}

/// The trimmed value of `name`, unless it is absent or blank.
fn non_empty<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query_value(pairs, name).map(str::trim).filter(|value| !value.is_empty())
}

impl Listing {
    fn from_query(pairs: &[(String, String)], plans: &[Plan]) -> Self {
        let mut listing = Listing { sort: "slug", page: 1, ..Listing::default() };
        let search = query_value(pairs, "q").unwrap_or_default().trim();
        if search.chars().count() > MAX_SEARCH_CHARS {
            listing.search = search.chars().take(MAX_SEARCH_CHARS).collect();
            listing.notes.push(format!("The search text was cut to its first {MAX_SEARCH_CHARS} characters."));
        } else {
            listing.search = search.to_string();
        }
        match non_empty(pairs, "plan") {
            Some(plan) if plans.iter().any(|known| known.spec.name == plan) => listing.plan = Some(plan.to_string()),
            Some(plan) => listing.notes.push(format!("There is no plan “{plan}”: tenants of every plan are shown.")),
            None => {}
        }
        if let Some(state) = non_empty(pairs, "state") {
            match state.parse() {
                Ok(state) => listing.state = Some(state),
                Err(_) => listing.notes.push(format!("There is no state “{state}”: tenants in every state are shown.")),
            }
        }
        if let Some(sort) = non_empty(pairs, "sort") {
            match Store::TENANT_SORT_KEYS.iter().find(|key| **key == sort) {
                Some(key) => listing.sort = key,
                None => {
                    listing.notes.push(format!("Tenants cannot be sorted by “{sort}”: they are sorted by address."))
                }
            }
        }
        match query_value(pairs, "dir").map(str::trim) {
            None | Some("" | "asc") => {}
            Some("desc") => listing.descending = true,
            Some(other) => listing.notes.push(format!("“{other}” is no order: ascending order is used.")),
        }
        if let Some(text) = non_empty(pairs, "page") {
            match text.parse::<u64>() {
                Ok(page) if page >= 1 => listing.page = page,
                _ => listing.notes.push(format!("There is no page “{text}”: the first page is shown.")),
            }
        }
        listing
    }

    /// The query of a link to this listing with `changes` applied (an empty value drops a name).
    fn link(&self, changes: &[(&str, &str)]) -> String {
        let page = self.page.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("q", &self.search),
            ("plan", self.plan.as_deref().unwrap_or("")),
            ("state", self.state.map(|state| state.as_str()).unwrap_or("")),
            ("sort", if self.sort == "slug" { "" } else { self.sort }),
            ("dir", if self.descending { "desc" } else { "" }),
            ("page", if self.page == 1 { "" } else { &page }),
        ];
        for (name, value) in changes {
            if let Some(pair) = pairs.iter_mut().find(|(key, _)| key == name) {
                pair.1 = value;
            }
        }
        format!("/provider{}", query_string(&pairs))
    }
}

pub async fn page_view(state: web::Data<AppState>, request: HttpRequest, session: Session) -> HttpResponse {
    if provider_admin(&session).is_none() {
        return layout::not_found(&request, &session);
    }
    let plans = match state.store.plans().await {
        Ok(plans) => plans,
        Err(error) => {
            tracing::warn!(%error, "plans not read for the provider console");
            return layout::unavailable(&request, &session);
        }
    };
    let mut listing = Listing::from_query(&query_pairs(&request), &plans);
    let mut search = state.store.tenant_search().matching(&listing.search).sort(listing.sort, listing.descending);
    if let Some(plan) = &listing.plan {
        search = search.on_plan(plan);
    }
    if let Some(wanted) = listing.state {
        search = search.in_state(wanted);
    }
    let search = search.page(listing.page, PER_PAGE);
    let (found, totals) = match futures::try_join!(search.run(), state.store.plan_totals()) {
        Ok(answers) => answers,
        Err(error) => {
            tracing::warn!(%error, "tenants not read for the provider console");
            return layout::unavailable(&request, &session);
        }
    };
    if found.page < listing.page {
        let pages = found.pages;
        listing.notes.push(format!(
            "There {} only {pages} {}: the last is shown.",
            if pages == 1 { "is" } else { "are" },
            if pages == 1 { "page" } else { "pages" }
        ));
    }
    listing.page = found.page;

    let display_name = |name: &str| {
        plans.iter().find(|plan| plan.spec.name == name).map_or(name.to_string(), |plan| plan.spec.display_name.clone())
    };
    // A plan without revenue shows a zero in its own currency.
    let currency_of = |name: &str| {
        plans.iter().find(|plan| plan.spec.name == name).map(|plan| plan.spec.price_per_seat_month.currency)
    };
    let default_currency = plans.first().map(|plan| plan.spec.price_per_seat_month.currency);
    let rows: Vec<(&Tenant, u32, u32)> =
        found.tenants.iter().map(|row| (&row.tenant, row.seats_held, row.tenant.licensed_seats)).collect();

    let csrf = CsrfToken::for_request(&request);
    let main = html! {
        h1 { "Tenants" }
        section aria-labelledby="totals-title" {
            h2 id="totals-title" { "Totals" }
            div class="table-scroll" role="region" aria-labelledby="totals-caption" tabindex="0" {
                table class="data totals" {
                    caption id="totals-caption" { "Tenants, seats and monthly recurring revenue per plan" }
                    thead {
                        tr {
                            th scope="col" { "Plan" }
                            th scope="col" class="number" { "Tenants" }
                            th scope="col" class="number" { "Seats held" }
                            th scope="col" class="number" { "Trialing seats" }
                            th scope="col" class="number" { "Monthly recurring revenue" }
                        }
                    }
                    tbody {
                        @for (name, plan) in &totals.plans {
                            tr data-plan=(name) {
                                th scope="row" { (display_name(name)) " " span class="code" { (name) } }
                                (totals_cells(plan.tenants, plan.seats_held, plan.trialing_seats, &plan.mrr, currency_of(name)))
                            }
                        }
                    }
                    tfoot {
                        tr data-plan="all" {
                            th scope="row" { "All plans" }
                            (totals_cells(totals.all.tenants, totals.all.seats_held, totals.all.trialing_seats, &totals.all.mrr, default_currency))
                        }
                    }
                }
            }
            p class="hint" {
                "Revenue counts the seats held by active and past-due tenants, each at the price of its own plan "
                "version; trialing seats are not billed yet, suspended tenants pay nothing."
            }
        }
        section aria-labelledby="tenants-title" {
            h2 id="tenants-title" { "Tenant list" }
            (filters(&listing, &plans))
            @if !listing.notes.is_empty() {
                div class="notice" role="status" {
                    @for note in &listing.notes { p { (note) } }
                }
            }
            p id="match-count" {
                (found.total) @if found.total == 1 { " tenant matches." } @else { " tenants match." }
                @if listing.state != Some(SubscriptionState::Canceled) { " Deleted tenants are shown under the state “canceled”." }
            }
            (tenant_table(&listing, &rows, found.page, found.pages, &display_name))
            (pagination(&listing, found.page, found.pages))
        }
    };
    let markup = frame(&request, "Tenants", &session, Some(&csrf), None, main);
    page(&request, StatusCode::OK, Some(&csrf), markup)
}

fn totals_cells(
    tenants: u64,
    seats_held: u64,
    trialing_seats: u64,
    mrr: &[Money],
    currency: Option<crate::domain::money::Currency>,
) -> Markup {
    html! {
        td class="number" data-total="tenants" { (tenants) }
        td class="number" data-total="seats" { (seats_held) }
        td class="number" data-total="trialing" { (trialing_seats) }
        td class="number" data-total="mrr" {
            @if mrr.is_empty() {
                @match currency {
                    Some(currency) => (format_money(&Money { minor: 0, currency })),
                    None => "0.00",
                }
            }
            @for (index, amount) in mrr.iter().enumerate() {
                @if index > 0 { br; }
                (format_money(amount))
            }
        }
    }
}

fn filters(listing: &Listing, plans: &[Plan]) -> Markup {
    html! {
        form method="get" action="/provider" class="filters" role="search" aria-label="Tenants" {
            div class="field" {
                label for="q" { "Search" }
                p class="hint" id="q-hint" { "Part of a name, address or owner email; case does not matter." }
                input type="search" id="q" name="q" value=(listing.search) maxlength=(MAX_SEARCH_CHARS)
                    aria-describedby="q-hint" autocomplete="off";
            }
            div class="field" {
                label for="plan" { "Plan" }
                select id="plan" name="plan" {
                    option value="" selected[listing.plan.is_none()] { "Every plan" }
                    @for plan in plans {
                        option value=(plan.spec.name) selected[listing.plan.as_deref() == Some(plan.spec.name.as_str())] {
                            (plan.spec.display_name)
                        }
                    }
                }
            }
            div class="field" {
                label for="state" { "State" }
                select id="state" name="state" {
                    option value="" selected[listing.state.is_none()] { "All but canceled" }
                    @for wanted in SubscriptionState::ALL {
                        option value=(wanted.as_str()) selected[listing.state == Some(wanted)] {
                            (state_label(wanted)) @if wanted == SubscriptionState::Canceled { " (deleted)" }
                        }
                    }
                }
            }
            div class="field" {
                label for="sort" { "Sort by" }
                select id="sort" name="sort" {
                    @for (key, name) in SORT_CHOICES {
                        option value=(key) selected[listing.sort == key] { (name) }
                    }
                }
            }
            div class="field" {
                label for="dir" { "Order" }
                select id="dir" name="dir" {
                    option value="asc" selected[!listing.descending] { "Ascending" }
                    option value="desc" selected[listing.descending] { "Descending" }
                }
            }
            button type="submit" { "Show tenants" }
        }
    }
}

fn tenant_table(
    listing: &Listing,
    rows: &[(&Tenant, u32, u32)],
    page: u64,
    pages: u64,
    display_name: &dyn Fn(&str) -> String,
) -> Markup {
    let sorted_column = if listing.sort == "slug" { "name" } else { listing.sort };
    let direction = if listing.descending { "descending" } else { "ascending" };
    html! {
        div class="table-scroll" role="region" aria-labelledby="tenants-caption" tabindex="0" {
            table class="data tenants" {
                caption id="tenants-caption" { "Tenants, page " (page) " of " (pages) }
                thead {
                    tr {
                        @for (key, header) in SORTABLE {
                            @let sorted_here = sorted_column == key;
                            // A second click on the column's link reverses its order.
                            @let next = if listing.sort == key && !listing.descending { "desc" } else { "asc" };
                            th scope="col" aria-sort=[sorted_here.then_some(direction)]
                                class=[(key == "seats").then_some("number")] {
                                a href=(listing.link(&[("sort", key), ("dir", next), ("page", "")])) {
                                    (header)
                                    @if sorted_here { span aria-hidden="true" { @if listing.descending { " ▼" } @else { " ▲" } } }
                                }
                            }
                            @if key == "seats" { th scope="col" { "Provisioning" } }
                        }
                    }
                }
                tbody {
                    @if rows.is_empty() {
                        tr { td colspan="6" { "No tenant matches." } }
                    }
                    @for (tenant, seats_held, licensed_seats) in rows {
                        tr data-tenant=(tenant.slug) {
                            td {
                                a href={ "/provider/tenants/" (tenant.slug) } { (tenant.display_name) }
                                br;
                                span class="code" { (tenant.slug) }
                            }
                            td { (display_name(&tenant.plan)) " " span class="muted" { "v" (tenant.plan_version) } }
                            td class={ "state state-" (tenant.state.as_str()) } {
                                (state_label(tenant.state))
                                @if tenant.deleted_at.is_some() { " (deleted)" }
                            }
                            td class="number" { (seats_held) " / " (licensed_seats) }
                            td { (provisioning_label(tenant.provisioning)) }
                            td { (date(tenant.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

fn pagination(listing: &Listing, page: u64, pages: u64) -> Markup {
    let previous = (page - 1).to_string();
    let next = (page + 1).to_string();
    html! {
        nav class="pages" aria-label="Pages of tenants" {
            @if page > 1 {
                a href=(listing.link(&[("page", if page == 2 { "" } else { &previous })])) rel="prev" { "← Previous page" }
            }
            span aria-current="page" { "Page " (page) " of " (pages) }
            @if page < pages {
                a href=(listing.link(&[("page", &next)])) rel="next" { "Next page →" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn nonsense_is_replaced_by_defaults_and_said() {
        let long = "x".repeat(500);
        let listing = Listing::from_query(
            &pairs(&[
                ("q", &long),
                ("plan", "nope"),
                ("state", "paused"),
                ("sort", "price"),
                ("dir", "up"),
                ("page", "0"),
            ]),
            &[],
        );
        assert_eq!(listing.search.chars().count(), MAX_SEARCH_CHARS);
        assert_eq!(
            (listing.plan, listing.state, listing.sort, listing.descending, listing.page),
            (None, None, "slug", false, 1)
        );
        assert_eq!(listing.notes.len(), 6, "{:?}", listing.notes);
    }

    #[test]
    fn links_keep_the_query_and_change_what_is_asked() {
        let listing = Listing::from_query(
            &pairs(&[("q", "a&b"), ("state", "active"), ("sort", "seats"), ("dir", "desc"), ("page", "3")]),
            &[],
        );
        assert!(listing.notes.is_empty(), "{:?}", listing.notes);
        assert_eq!(listing.link(&[("page", "4")]), "/provider?q=a%26b&state=active&sort=seats&dir=desc&page=4");
        assert_eq!(
            listing.link(&[("sort", "name"), ("dir", "asc"), ("page", "")]),
            "/provider?q=a%26b&state=active&sort=name&dir=asc"
        );
    }
}
