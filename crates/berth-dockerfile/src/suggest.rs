//! "did you mean ...?" suggestions, BuildKit's rule: the closest option at
//! Levenshtein distance below 3, never for an exact match.

/// Appends ` (did you mean X?)` to `msg` when an option is close to `val`.
pub(crate) fn did_you_mean(
    msg: String,
    val: &str,
    options: &[&str],
    case_sensitive: bool,
) -> String {
    match suggest(val, options, case_sensitive) {
        Some(m) => format!("{msg} (did you mean {m}?)"),
        None => msg,
    }
}

fn suggest(val: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let v = if case_sensitive {
        val.to_string()
    } else {
        val.to_lowercase()
    };
    // Bound the work on hostile input: options are short words.
    if v.chars().count() > 64 {
        return None;
    }
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let o = if case_sensitive {
            opt.to_string()
        } else {
            opt.to_lowercase()
        };
        if o == v {
            return None;
        }
        let d = levenshtein(&v, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if val == val.to_lowercase() {
                o.to_lowercase()
            } else if val == val.to_uppercase() {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(
            suggest("RUNN", &["run", "cmd"], false).as_deref(),
            Some("RUN")
        );
        assert_eq!(
            suggest("runn", &["run", "cmd"], false).as_deref(),
            Some("run")
        );
        assert_eq!(suggest("Runn", &["run"], false).as_deref(), Some("run"));
        assert_eq!(suggest("xyzzy", &["run"], false), None);
        assert_eq!(suggest("run", &["run"], false), None);
    }
}
