//! Where a key is in the config text, for error messages (`file:line`).

/// As [`find_line`], in the `index`-th (0-based) `[[section]]` of an array
/// of tables; the section's header line when the key is not set in it.
pub(super) fn find_line_in(text: &str, dotted: &str, index: usize) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.')?;
    let header = format!("[[{section}]]");
    let mut seen = 0;
    let mut inside: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if inside.is_some() {
                break;
            }
            if t == header {
                if seen == index {
                    inside = Some(i + 1);
                }
                seen += 1;
            }
        } else if inside.is_some()
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    inside
}

/// The 1-based line where `section.key` is set (the section may itself be
/// dotted: `mqtt.rule.filter` is `filter` in `[[mqtt.rule]]`): the first line assigning
/// `key` after a `[section]` header and before the next header. Covers the
/// plain layout of the example config; dotted or inline forms get no line.
pub(super) fn find_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.')?;
    let header = format!("[{section}]");
    let array_header = format!("[[{section}]]");
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t == header || t == array_header;
        } else if in_section
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}
