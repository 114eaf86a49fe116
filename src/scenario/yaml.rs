//! A small YAML tree that keeps the position of every key and value.
//!
//! Input: scenario text. Output: a [`Node`] tree built from yaml-rust2's marked events, or a
//! [`ParseFailure`] naming line, column and key path. Rejects what a scenario never needs and
//! what would hide mistakes: duplicate keys, anchors and aliases, tags, several documents,
//! non-scalar keys, nesting deeper than [`MAX_DEPTH`]. Iterative, so no input can overflow the
//! stack while building.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted (the format itself needs 4).
pub(crate) const MAX_DEPTH: usize = 32;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark {
    pub line: usize,
    pub col: usize,
}

impl Mark {
    fn from_marker(m: &Marker) -> Self {
        Mark {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// One mapping key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub mark: Mark,
    pub name: String,
}

/// A YAML value with its position.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A scalar; `plain` is false when it was quoted or a block scalar (always a string then).
    Scalar {
        mark: Mark,
        value: String,
        plain: bool,
    },
    /// A sequence.
    Seq { mark: Mark, items: Vec<Node> },
    /// A mapping, in document order.
    Map {
        mark: Mark,
        entries: Vec<(Key, Node)>,
    },
}

impl Node {
    pub fn mark(&self) -> Mark {
        match self {
            Node::Scalar { mark, .. } | Node::Seq { mark, .. } | Node::Map { mark, .. } => *mark,
        }
    }

    /// A short description for messages: `a mapping`, `a list`, `'text'`, `nothing`.
    pub fn describe(&self) -> String {
        match self {
            Node::Map { .. } => "a mapping".into(),
            Node::Seq { .. } => "a list".into(),
            Node::Scalar { value, plain, .. } => {
                if *plain && is_null(value) {
                    "nothing (an empty value)".into()
                } else {
                    format!("'{value}'")
                }
            }
        }
    }
}

/// True for the plain scalars YAML 1.2 reads as null.
pub(crate) fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

/// Why the text is not an acceptable YAML document.
#[derive(Debug, Clone)]
pub(crate) struct ParseFailure {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

enum Frame {
    Seq {
        mark: Mark,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        entries: Vec<(Key, Node)>,
        pending: Option<Key>,
    },
}

/// Renders a key path from parts: `a.b[2].c`; the empty path is [`super::error::TOP_LEVEL`].
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn stack_path(stack: &[Frame]) -> String {
    let mut out = String::new();
    for f in stack {
        match f {
            Frame::Seq { items, .. } => out.push_str(&format!("[{}]", items.len())),
            Frame::Map {
                pending: Some(k), ..
            } => out = join(&out, &k.name),
            Frame::Map { .. } => {}
        }
    }
    out
}

/// Parses one YAML document; `Ok(None)` for a file with no document (empty or only comments).
pub(crate) fn parse(text: &str) -> Result<Option<Node>, ParseFailure> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let fail = |stack: &[Frame], mark: Mark, message: String| ParseFailure {
        mark,
        path: stack_path(stack),
        message,
    };
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(ev) => ev,
            Err(e) => {
                return Err(fail(
                    &stack,
                    Mark::from_marker(e.marker()),
                    format!("YAML syntax error: {}", e.info()),
                ))
            }
        };
        let mark = Mark::from_marker(&marker);
        let done = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(fail(
                        &stack,
                        mark,
                        "a scenario file holds one YAML document; found a second one (`---`)"
                            .into(),
                    ));
                }
                None
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => None,
            Event::Alias(_) => {
                return Err(fail(
                    &stack,
                    mark,
                    "aliases (*name) are not supported in scenario files".into(),
                ))
            }
            Event::Scalar(value, style, anchor, tag) => {
                check_plain_node(&stack, mark, anchor, tag.is_some())?;
                Some(Node::Scalar {
                    mark,
                    value,
                    plain: style == TScalarStyle::Plain,
                })
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                check_plain_node(&stack, mark, anchor, tag.is_some())?;
                if stack.len() >= MAX_DEPTH {
                    return Err(fail(
                        &stack,
                        mark,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        mark,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        mark,
                        entries: Vec::new(),
                        pending: None,
                    }
                };
                stack.push(frame);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { mark, items }) => Some(Node::Seq { mark, items }),
                Some(Frame::Map { mark, entries, .. }) => {
                    // Block mappings report their start after the first key; use the first key.
                    let mark = entries.first().map_or(mark, |(k, _)| k.mark.min(mark));
                    Some(Node::Map { mark, entries })
                }
                None => return Err(fail(&stack, mark, "unbalanced YAML structure".into())),
            },
        };
        if let Some(node) = done {
            attach(&mut stack, &mut root, node)?;
        }
    }
    Ok(root)
}

fn check_plain_node(
    stack: &[Frame],
    mark: Mark,
    anchor: usize,
    tagged: bool,
) -> Result<(), ParseFailure> {
    let message = if anchor != 0 {
        "anchors (&name) are not supported in scenario files"
    } else if tagged {
        "tags (!name) are not supported in scenario files"
    } else {
        return Ok(());
    };
    Err(ParseFailure {
        mark,
        path: stack_path(stack),
        message: message.into(),
    })
}

fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), ParseFailure> {
    let path = stack_path(stack);
    match stack.last_mut() {
        None => {
            if root.is_some() {
                return Err(ParseFailure {
                    mark: node.mark(),
                    path,
                    message: "a scenario file holds one YAML document".into(),
                });
            }
            *root = Some(node);
        }
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map {
            entries, pending, ..
        }) => match pending.take() {
            Some(key) => entries.push((key, node)),
            None => {
                let Node::Scalar { mark, value, .. } = node else {
                    return Err(ParseFailure {
                        mark: node.mark(),
                        path,
                        message: format!("a key must be a plain name, found {}", node.describe()),
                    });
                };
                if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == value) {
                    return Err(ParseFailure {
                        mark,
                        path: join(&path, &value),
                        message: format!(
                            "duplicate key '{value}' (first given at line {})",
                            first.mark.line
                        ),
                    });
                }
                *pending = Some(Key { mark, name: value });
            }
        },
    }
    Ok(())
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_owned()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// Finds the value at `path` (`a.b[2].c`), or the deepest ancestor present when part of the
/// path is absent (a defaulted key). Returns the position of that value.
pub(crate) fn locate(root: &Node, path: &str) -> Mark {
    let mut node = root;
    for seg in segments(path) {
        let next = match (&seg, node) {
            (Seg::Key(k), Node::Map { entries, .. }) => entries
                .iter()
                .find(|(key, _)| &key.name == k)
                .map(|(_, v)| v),
            (Seg::Index(i), Node::Seq { items, .. }) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.mark()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_finds_paths() {
        let text = "name: x\nworkload:\n  duration: 30\nmodels:\n  - name: bert\n    weight: 2\n";
        let root = parse(text).unwrap().unwrap();
        assert_eq!(root.mark(), Mark { line: 1, col: 1 });
        assert_eq!(
            locate(&root, "workload.duration"),
            Mark { line: 3, col: 13 }
        );
        assert_eq!(locate(&root, "workload"), Mark { line: 3, col: 3 });
        assert_eq!(locate(&root, "models[0].weight"), Mark { line: 6, col: 13 });
        // Absent keys fall back to the deepest ancestor.
        assert_eq!(
            locate(&root, "workload.iterations"),
            Mark { line: 3, col: 3 }
        );
    }

    #[test]
    fn rejects_duplicates_anchors_and_second_documents() {
        let dup = parse("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!((dup.mark.line, dup.path.as_str()), (4, "b.c"));
        assert!(parse("a: &x 1\nb: *x\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert!(parse("a: !!str 1\n").is_err());
        assert!(parse("# only a comment\n").unwrap().is_none());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).is_err());
    }
}
