//! Kubernetes resource quantities (`500m`, `1Gi`, `2e3`): enough of the format to validate a
//! spec and to compare what we asked for with what the apiserver stored in canonical form.

/// The value of `text` in base units (cores, bytes), or why it is not a quantity.
pub fn parse(text: &str) -> Result<f64, String> {
    let malformed = || format!("`{text}` is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)");
    let number_end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let digits = number.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err(malformed());
    }
    let value: f64 = number.parse().map_err(|_| malformed())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| malformed())?;
            10f64.powi(power)
        }
        _ => return Err(malformed()),
    };
    Ok(value * multiplier)
}

/// A quantity that must not be negative; `positive` also refuses zero (a volume of 0 bytes).
pub fn check(field: &str, text: &str, positive: bool) -> Result<(), String> {
    let value = parse(text).map_err(|e| format!("{field}: {e}"))?;
    if value < 0.0 {
        return Err(format!("{field} must not be negative (got {text})"));
    }
    if positive && value == 0.0 {
        return Err(format!("{field} must be greater than zero (got {text})"));
    }
    Ok(())
}

/// Whether two quantity strings mean the same amount (`1Gi` == `1024Mi`, `0.5` == `500m`).
pub fn same(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Ok(x), Ok(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse("500m").unwrap(), 0.5);
        assert_eq!(parse("2").unwrap(), 2.0);
        assert_eq!(parse("1Gi").unwrap(), 1024f64.powi(3));
        assert_eq!(parse("1.5k").unwrap(), 1500.0);
        assert_eq!(parse("2e3").unwrap(), 2000.0);
        assert_eq!(parse("-1Gi").unwrap(), -(1024f64.powi(3)));
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for bad in ["", "Gi", "1GB", "1.2.3", "ten", "1 Gi", "."] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checks_sign_and_zero() {
        assert!(check("storage", "10Gi", true).is_ok());
        assert_eq!(check("storage", "-1Gi", true).unwrap_err(), "storage must not be negative (got -1Gi)");
        assert_eq!(check("storage", "0", true).unwrap_err(), "storage must be greater than zero (got 0)");
        assert!(check("cpu", "0", false).is_ok());
    }

    #[test]
    fn compares_canonical_and_written_forms() {
        assert!(same("1Gi", "1024Mi"));
        assert!(same("0.5", "500m"));
        assert!(same("1", "1000m"));
        assert!(!same("1Gi", "1G"));
        assert!(!same("abc", "abc"));
    }
}
