//! A bound on how deeply YAML text nests flow collections (`[…]`, `{…}`), checked before
//! the text is parsed.
//!
//! serde_yaml refuses a document nested more than 128 levels deep, but only after libyaml
//! has scanned all of it, and libyaml's scanner takes time quadratic in the depth of nested
//! flow collections: for every token it walks the pending "simple key" of every open flow
//! level. 250 KB of `{a: {a: …` kept the config reader busy for minutes (found by
//! `fuzz/config_parse`). Counting brackets first bounds the scan to linear time.
//!
//! The count is deliberately simple — every `[`/`{` opens, every `]`/`}` closes, wherever
//! they are — so brackets inside quoted strings or comments count too. That can only
//! overestimate real nesting, and the bound is twice serde_yaml's own, so the only texts it
//! refuses are ones serde_yaml refuses anyway, or ones with hundreds of unbalanced brackets
//! in their strings.

/// Most open flow collections at any point of a config text.
pub const MAX_FLOW_DEPTH: usize = 256;

/// `Err` (naming the line) when `text` opens more than [`MAX_FLOW_DEPTH`] flow collections
/// without closing them.
pub(crate) fn check(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!(
                        "nested more than {MAX_FLOW_DEPTH} levels deep ([ and {{) at line {line}"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::{Config, ConfigError};

    #[test]
    fn flow_nesting_up_to_the_bound_passes_and_deeper_is_refused_with_its_line() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_FLOW_DEPTH),
            "]".repeat(MAX_FLOW_DEPTH)
        );
        assert_eq!(check(&ok), Ok(()));
        // Closed collections do not add up.
        assert_eq!(check(&"[a, {b: 1}]\n".repeat(10_000)), Ok(()));
        let deep = format!("a: 1\nb: {}", "{a: ".repeat(MAX_FLOW_DEPTH + 1));
        let e = check(&deep).expect_err("too deep");
        assert!(
            e.contains("more than 256 levels deep") && e.ends_with("line 2"),
            "{e}"
        );
    }

    #[test]
    fn a_deeply_nested_config_is_refused_before_it_is_parsed() {
        // 50,000 levels: seconds (minutes in the fuzz build) for libyaml to scan.
        let text = format!(
            "application: a\nsource: {}1{}\n",
            "{a: ".repeat(50_000),
            "}".repeat(50_000)
        );
        let started = Instant::now();
        let e = Config::from_yaml(&text, "deep.yaml", PathBuf::from("."))
            .expect_err("too deep to be a config");
        assert!(started.elapsed() < Duration::from_secs(1));
        let ConfigError::Parse { message, .. } = &e else {
            panic!("{e}");
        };
        assert!(message.contains("nested more than"), "{message}");
    }
}
