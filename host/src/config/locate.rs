//! Finding the line of a key path in YAML text, for errors found after parsing.
//!
//! serde_yaml reports lines for what it rejects; checks made on the parsed config (a sink
//! that does not exist, a missing companion key) would otherwise say only the path. This
//! walks block-style YAML by indentation, which is how configs are written; for anything
//! it cannot follow (flow style, anchors) it answers `None` and the error keeps its path.

/// 1-based line of the last key of `path` (`a.b.c`), if it can be found.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for segment in path.split('.') {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(p) = parent_indent {
                if indent <= p {
                    break; // left the parent's block
                }
            }
            let key = trimmed
                .split_once(':')
                .map(|(k, _)| k.trim().trim_matches(|c| c == '"' || c == '\''));
            if key == Some(segment) {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        start = i + 1;
        parent_indent = Some(indent);
        found = Some(i + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const TEXT: &str = "a: 1\nsinks:\n  x:\n    topic: t\n  y:\n    # note\n    topic: u\nb: 2\n";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(line_of(TEXT, "a"), Some(1));
        assert_eq!(line_of(TEXT, "sinks.x.topic"), Some(4));
        assert_eq!(line_of(TEXT, "sinks.y.topic"), Some(7));
        assert_eq!(line_of(TEXT, "b"), Some(8));
    }

    #[test]
    fn stays_inside_the_parent_block() {
        assert_eq!(line_of(TEXT, "sinks.b"), None);
        assert_eq!(line_of(TEXT, "missing"), None);
    }
}
