//! "Did you mean …?": the valid key nearest to a misspelled one.
//!
//! Nearness is the optimal-string-alignment distance (insertions, deletions, substitutions
//! and swaps of two neighbours) between the keys with case, `_`, `-` and `.` ignored, so
//! `initialPosition` finds `initial_position` and `awsKinesisStreamNmae` finds
//! `awsKinesisStreamName`. A key is only suggested when it is close: at most a third of
//! the longer key's letters differ (and at least 2 may).

/// The candidate nearest to `word`, if one is close enough to be what was meant.
pub fn nearest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let w = normalize(word);
    candidates
        .into_iter()
        .map(|c| (distance(&w, &normalize(c)), c))
        .filter(|(d, c)| {
            let longest = w.len().max(c.chars().count());
            *d <= (longest / 3).max(2)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn normalize(s: &str) -> Vec<char> {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Optimal string alignment distance.
fn distance(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// Adds `(did you mean `x`?)` to a serde "unknown field/variant" message, using the list
/// of expected names serde already gives.
pub fn annotate_serde_message(message: &str) -> String {
    for what in ["unknown field `", "unknown variant `"] {
        let Some(start) = message.find(what) else {
            continue;
        };
        let name_start = start + what.len();
        let Some(name_len) = message[name_start..].find('`') else {
            continue;
        };
        let name = &message[name_start..name_start + name_len];
        let after = &message[name_start + name_len + 1..];
        let expected: Vec<&str> = after
            .split_once("expected ")
            .map(|(_, list)| list)
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        if let Some(best) = nearest(name, expected.iter().copied()) {
            let at = name_start + name_len + 1;
            return format!(
                "{} (did you mean `{best}`?){}",
                &message[..at],
                &message[at..]
            );
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_swaps_and_other_spellings() {
        let keys = [
            "stream",
            "streams",
            "initial_position",
            "receive_queue_size",
        ];
        assert_eq!(nearest("strem", keys), Some("stream"));
        assert_eq!(nearest("initialPosition", keys), Some("initial_position"));
        assert_eq!(
            nearest("recieve_queue_size", keys),
            Some("receive_queue_size")
        );
        assert_eq!(nearest("application", keys), None);
    }

    #[test]
    fn annotates_serde_messages() {
        let m =
            "source: unknown field `strem`, expected one of `stream`, `streams` at line 3 column 3";
        assert_eq!(
            annotate_serde_message(m),
            "source: unknown field `strem` (did you mean `stream`?), expected one of `stream`, `streams` at line 3 column 3"
        );
        let m = "x: unknown variant `lattest`, expected one of `trim_horizon`, `latest`";
        assert!(annotate_serde_message(m).contains("(did you mean `latest`?)"));
        let m = "x: unknown field `zzzzzzzz`, expected `a`";
        assert_eq!(annotate_serde_message(m), m);
    }
}
