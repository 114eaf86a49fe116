//! A serde `Deserializer` over the positioned YAML tree.
//!
//! Input: a [`Node`] and its key path. Output: any `Deserialize` type, or a [`DeError`] that
//! carries the key path and position of the innermost value that failed. Plain scalars are typed
//! by the YAML 1.2 core schema (null, booleans, integers, floats); quoted scalars are strings.
//! Messages name the bad value and avoid serde jargon (`unknown key 'x'; expected one of: ...`).

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;

use super::de_error::{one_of, plain_unexpected, DeError};
use super::yaml::{is_null, join, Key, Node};

/// Deserializes one node; errors from inside are placed at this node unless already placed.
pub(crate) struct NodeDe<'a> {
    pub node: &'a Node,
    pub path: String,
}

enum Plain<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
}

fn resolve(value: &str) -> Plain<'_> {
    if is_null(value) {
        return Plain::Null;
    }
    match value {
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Plain::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        _ => {}
    }
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = value.strip_prefix('+').unwrap_or(value).parse::<u64>() {
            return Plain::Unsigned(n);
        }
        if let Ok(n) = value.parse::<i64>() {
            return Plain::Signed(n);
        }
    }
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if looks_numeric {
        if let Ok(f) = value.parse::<f64>() {
            return Plain::Float(f);
        }
    }
    Plain::Str(value)
}

/// True when `value`, written as a plain scalar, reads back as that string (not null, a boolean
/// or a number).
pub(crate) fn reads_as_string(value: &str) -> bool {
    matches!(resolve(value), Plain::Str(_))
}

impl<'a> NodeDe<'a> {
    fn new(node: &'a Node, path: String) -> Self {
        NodeDe { node, path }
    }

    fn is_null(&self) -> bool {
        matches!(self.node, Node::Scalar { value, plain: true, .. } if is_null(value))
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match self.node {
            Node::Map { .. } => Unexpected::Map,
            Node::Seq { .. } => Unexpected::Seq,
            Node::Scalar { value, .. } => Unexpected::Str(value),
        }
    }
}

macro_rules! placed {
    ($self:ident, $body:expr) => {{
        let path = $self.path.clone();
        let mark = $self.node.mark();
        let r: Result<_, DeError> = $body;
        r.map_err(|e| e.place(&path, mark))
    }};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        placed!(self, {
            match self.node {
                Node::Map { entries, .. } => visitor.visit_map(MapAcc {
                    entries: entries.iter(),
                    value: None,
                    path: self.path.clone(),
                }),
                Node::Seq { items, .. } => visitor.visit_seq(SeqAcc {
                    items: items.iter().enumerate(),
                    path: self.path.clone(),
                }),
                Node::Scalar {
                    value,
                    plain: false,
                    ..
                } => visitor.visit_str(value),
                Node::Scalar { value, .. } => match resolve(value) {
                    Plain::Null => visitor.visit_unit(),
                    Plain::Bool(b) => visitor.visit_bool(b),
                    Plain::Unsigned(n) => visitor.visit_u64(n),
                    Plain::Signed(n) => visitor.visit_i64(n),
                    Plain::Float(f) => visitor.visit_f64(f),
                    Plain::Str(s) => visitor.visit_str(s),
                },
            }
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            placed!(self, visitor.visit_none())
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node {
            Node::Scalar { value, .. } if !self.is_null() => {
                placed!(self, visitor.visit_str(value))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node {
            Node::Map { .. } => self.deserialize_any(visitor),
            _ => {
                let unexp = self.unexpected();
                placed!(self, {
                    Err(de::Error::custom(format!(
                        "expected a mapping (key: value), found {}",
                        if matches!(unexp, Unexpected::Str(_)) {
                            self.node.describe()
                        } else {
                            plain_unexpected(&unexp)
                        }
                    )))
                })
            }
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node {
            Node::Seq { .. } => self.deserialize_any(visitor),
            _ => placed!(self, {
                Err(de::Error::custom(format!(
                    "expected a list, found {}",
                    self.node.describe()
                )))
            }),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        placed!(self, {
            match self.node {
                Node::Scalar { value, .. } if !self.is_null() => {
                    visitor.visit_enum(UnitEnum { name: value })
                }
                Node::Map { entries, .. } if entries.len() == 1 => {
                    let (key, value) = &entries[0];
                    visitor.visit_enum(EnumAcc {
                        key,
                        value,
                        path: join(&self.path, &key.name),
                    })
                }
                _ => Err(de::Error::custom(format!(
                    "{}, found {}",
                    one_of(variants),
                    self.node.describe()
                ))),
            }
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct
    }
}

/// Deserializes a mapping key: always a string, placed at the key itself.
struct KeyDe<'a> {
    key: &'a Key,
    path: String,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, mark) = (self.path, self.key.mark);
        visitor
            .visit_str(&self.key.name)
            .map_err(|e: DeError| e.place(&path, mark))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct MapAcc<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<(&'a Node, String)>,
    path: String,
}

impl<'de> de::MapAccess<'de> for MapAcc<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let path = join(&self.path, &key.name);
        self.value = Some((value, path.clone()));
        seed.deserialize(KeyDe { key, path }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => seed.deserialize(NodeDe::new(node, path)),
            None => Err(de::Error::custom("a value was read before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct SeqAcc<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: String,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => seed
                .deserialize(NodeDe::new(node, format!("{}[{i}]", self.path)))
                .map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A one-key mapping read as an enum variant with a value: `{browser: firefox}`.
struct EnumAcc<'a> {
    key: &'a Key,
    value: &'a Node,
    path: String,
}

impl<'de> de::EnumAccess<'de> for EnumAcc<'de> {
    type Error = DeError;
    type Variant = NodeDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'de>), DeError> {
        let v = seed.deserialize(KeyDe {
            key: self.key,
            path: self.path.clone(),
        })?;
        Ok((v, NodeDe::new(self.value, self.path)))
    }
}

/// A bare scalar read as an enum variant: `random`, `kill_browser`. Variants that carry a value
/// (`{browser: firefox}`) get a message showing how to write them.
struct UnitEnum<'a> {
    name: &'a str,
}

impl<'de> de::EnumAccess<'de> for UnitEnum<'de> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let d: de::value::StrDeserializer<'_, DeError> = self.name.into_deserializer();
        Ok((seed.deserialize(d)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitEnum<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(self.needs_value())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, DeError> {
        Err(self.needs_value())
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, DeError> {
        Err(self.needs_value())
    }
}

impl UnitEnum<'_> {
    fn needs_value(&self) -> DeError {
        de::Error::custom(format!(
            "'{0}' needs a value; write it as {{{0}: ...}}",
            self.name
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        if self.is_null() {
            Ok(())
        } else {
            placed!(self, {
                Err(de::Error::custom(format!(
                    "takes no value, found {}",
                    self.node.describe()
                )))
            })
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

/// Deserializes `T` from the document root.
pub(crate) fn from_root<'de, T: serde::Deserialize<'de>>(root: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe::new(root, String::new()))
}
