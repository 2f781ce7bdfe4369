//! PostgreSQL `to_char` patterns (`'YYYY-MM-DD HH24:MI:SS'`) as the chrono format strings
//! DataFusion's `to_char` takes (`'%Y-%m-%d %H:%M:%S'`). Without it, a PostgreSQL pattern would
//! come back as literal text from every row.
//!
//! Template patterns are matched case-insensitively, longest first, as PostgreSQL does
//! (`yyyy-mm-dd` is the same as `YYYY-MM-DD`; `Mon` / `MON` / `mon` differ only in case, which
//! chrono cannot express: they all give `Jan`). Double-quoted text is copied literally,
//! anything else as it is.

/// PostgreSQL template pattern → chrono specifier, longest first.
const PATTERNS: &[(&str, &str)] = &[
    ("HH24", "%H"),
    ("HH12", "%I"),
    ("YYYY", "%Y"),
    ("MONTH", "%B"),
    ("DAY", "%A"),
    ("DDD", "%j"),
    ("MON", "%b"),
    ("A.M.", "%p"),
    ("P.M.", "%p"),
    ("YY", "%y"),
    ("MM", "%m"),
    ("MI", "%M"),
    ("MS", "%3f"),
    ("US", "%6f"),
    ("DD", "%d"),
    ("DY", "%a"),
    ("HH", "%I"),
    ("SS", "%S"),
    ("AM", "%p"),
    ("PM", "%p"),
];

/// The chrono format string of a PostgreSQL `to_char` pattern. A pattern holding `%` is
/// taken to be a chrono format already (and is left alone), so that translating twice (a
/// view's stored, rewritten SQL is rewritten again when it is planned) changes nothing.
pub fn pg_to_chrono(pattern: &str) -> String {
    if pattern.contains('%') {
        return pattern.to_string();
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut i = 0;
    'outer: while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            // Quoted literal text, up to the closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                out.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        // `FM` (fill mode) only changes padding: chrono pads numbers, so it is dropped.
        if starts_with_ci(&chars[i..], "FM") {
            i += 2;
            continue;
        }
        for (pg, chrono) in PATTERNS {
            if starts_with_ci(&chars[i..], pg) {
                out.push_str(chrono);
                i += pg.chars().count();
                continue 'outer;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn starts_with_ci(s: &[char], pattern: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    s.len() >= p.len() && s.iter().zip(&p).all(|(a, b)| a.eq_ignore_ascii_case(b))
}

#[cfg(test)]
mod tests {
    use super::pg_to_chrono;

    #[test]
    fn postgres_patterns_become_chrono_formats() {
        assert_eq!(pg_to_chrono("YYYY-MM-DD"), "%Y-%m-%d");
        assert_eq!(pg_to_chrono("yyyy-mm-dd"), "%Y-%m-%d");
        assert_eq!(pg_to_chrono("HH24:MI:SS.MS"), "%H:%M:%S.%3f");
        assert_eq!(pg_to_chrono("Dy, DD Mon YYYY HH12 AM"), "%a, %d %b %Y %I %p");
        assert_eq!(pg_to_chrono("\"day\" DDD"), "day %j");
        // Idempotent: a chrono format is left as it is.
        assert_eq!(pg_to_chrono(&pg_to_chrono("YYYY-MM-DD")), "%Y-%m-%d");
        assert_eq!(pg_to_chrono("FMMonth"), "%B");
    }
}
