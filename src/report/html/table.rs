//! An HTML table of text cells, escaped, the columns a predicate picks right-aligned: the
//! sharding and generation sections of `report.html` share it.

use std::fmt::Write as _;

use crate::report::template::escape;

/// `rows` under `header`; the columns `numeric` picks are right-aligned.
pub(super) fn table(
    header: &[&str],
    numeric: &dyn Fn(usize) -> bool,
    rows: Vec<Vec<String>>,
) -> String {
    let mut t = String::from("<table><tr>");
    for h in header {
        let _ = write!(t, "<th>{}</th>", escape(h));
    }
    t.push_str("</tr>");
    for r in rows {
        t.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if numeric(i) { r#" class="num""# } else { "" };
            let _ = write!(t, "<td{class}>{}</td>", escape(c));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}
