//! A YAML document as a tree of located nodes, and a serde `Deserializer` over it.
//!
//! Parsing happens once (serde-saphyr, with its input budgets); decoding into the
//! typed model then runs per section and per step over this tree, so one bad step
//! does not hide the problems in the next one, and every error keeps the line and
//! column of the node it is about.

mod problems;
mod recover;

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use problems::{Problem, Problems, Severity, suggest};
pub use recover::decode_all;

/// Largest playbook or scenario file accepted, before any parsing.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// A 1-based position in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own positions so "unknown key" points at the key.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What a user would call this kind of value, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Entries of a mapping, or `None` for any other kind of node.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Calls `f` on every string scalar below this node (for template checks).
    pub fn for_each_str(&self, f: &mut dyn FnMut(&str, Pos)) {
        match &self.value {
            Value::Str(s) => f(s, self.pos),
            Value::Seq(items) => items.iter().for_each(|n| n.for_each_str(f)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| v.for_each_str(f)),
            _ => {}
        }
    }

    /// A copy with every string scalar rewritten by `f` (template substitution).
    pub fn map_strings(&self, f: &dyn Fn(&str) -> String) -> Node {
        let value = match &self.value {
            Value::Str(s) => Value::Str(f(s)),
            Value::Seq(items) => Value::Seq(items.iter().map(|n| n.map_strings(f)).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.map_strings(f)))
                    .collect(),
            ),
            other => other.clone(),
        };
        Node {
            pos: self.pos,
            value,
        }
    }
}

/// A YAML syntax or budget error, with where the parser stopped.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses YAML text into a located tree. Anchors and aliases are resolved by
/// serde-saphyr within its budgets; duplicate keys are errors.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(SyntaxError {
            pos: Pos { line: 1, column: 1 },
            message: format!(
                "file is {} bytes; the limit is {} bytes",
                text.len(),
                MAX_INPUT_BYTES
            ),
        });
    }
    if text.trim().is_empty() {
        return Err(SyntaxError {
            pos: Pos { line: 1, column: 1 },
            message: "the file is empty".into(),
        });
    }
    let raw: serde_saphyr::Spanned<RawValue> = serde_saphyr::from_str_with_options(text, options())
        .map_err(|e| {
            let inner = e.without_snippet();
            let pos = inner
                .location()
                .map(|l| Pos {
                    line: l.line().max(1),
                    column: l.column().max(1),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            SyntaxError {
                pos,
                message: plain_message(&strip_location_suffix(&inner.to_string())),
            }
        })?;
    Ok(raw_to_node(raw))
}

/// Budgets sized for playbooks and scenarios, far below the parser's
/// general-purpose defaults (250,000 nodes, 50,000 aliases): an alias bomb
/// must be refused in milliseconds, not after expanding a quarter of a
/// million nodes (the fuzzer found one taking 4 s in a debug build).
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 100_000;
    budget.max_aliases = 2_000;
    budget.max_anchors = 2_000;
    budget.max_events = 300_000;
    budget.max_recorded_anchor_events = 10_000;
    budget.max_recorded_anchor_bytes = 512 * 1024;
    budget.max_total_scalar_bytes = 4 * MAX_INPUT_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// The parser's messages for its safety limits name its own types and API;
/// a responder needs to know what is wrong with the file instead.
fn plain_message(message: &str) -> String {
    let plain = if ["Nodes", "Aliases", "Anchors", "RecordedAnchor"]
        .iter()
        .any(|k| message.starts_with(&format!("budget breached: {k}")))
    {
        "the document expands to too many nodes (anchors and aliases multiply it): refused as an alias bomb"
    } else if message.starts_with("budget breached: Depth") || message == "recursion limit exceeded"
    {
        "nested too deeply: a playbook needs only a few levels"
    } else if message.starts_with("budget breached") {
        return format!("the document exceeds the parser's safety limits ({message})");
    } else if message.starts_with("recursive references") {
        "an alias refers to its own anchor: the structure would be infinite"
    } else if message.starts_with("multiple YAML documents") {
        "more than one YAML document (`---`): a playbook is one document"
    } else if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest);
        return format!("duplicate key `{key}`: YAML keeps only one of them, so say it once");
    } else {
        return message.to_string();
    };
    plain.to_string()
}

/// serde-saphyr appends " at line X column Y" to its messages; we print positions ourselves.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn raw_to_node(raw: serde_saphyr::Spanned<RawValue>) -> Node {
    let pos = Pos {
        line: raw.referenced.line().max(1),
        column: raw.referenced.column().max(1),
    };
    let value = match raw.value {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Int(i) => Value::Int(i),
        RawValue::Float(f) => Value::Float(f),
        RawValue::Str(s) => Value::Str(s),
        RawValue::Seq(items) => Value::Seq(items.into_iter().map(raw_to_node).collect()),
        RawValue::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (raw_to_node(k), raw_to_node(v)))
                .collect(),
        ),
    };
    Node { pos, value }
}

/// The shape serde-saphyr fills in, with a span on every node.
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<serde_saphyr::Spanned<RawValue>>),
    Map(
        Vec<(
            serde_saphyr::Spanned<RawValue>,
            serde_saphyr::Spanned<RawValue>,
        )>,
    ),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                i64::try_from(v)
                    .map(RawValue::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
            fn visit_unit<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_none<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
                RawValue::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawValue::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawValue::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A decoding error: a message and, once known, the node it is about.
#[derive(Debug, Clone)]
pub struct DecodeError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl DecodeError {
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        DecodeError {
            pos: Some(pos),
            message: message.into(),
        }
    }

    /// Keeps the innermost position: the first node to see the error claims it.
    fn or_at(mut self, pos: Pos) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            pos: None,
            message: msg.to_string(),
        }
    }
}

/// Decodes a node into `T`, with positions on errors.
pub fn decode<T: for<'de> Deserialize<'de>>(node: &Node) -> Result<T, DecodeError> {
    T::deserialize(node)
}

/// Struct name under which model types ask for the raw located node (see [`Located`]).
const LOCATED_MARKER: &str = "$breakglass::Located";

/// A decoded value with the position of its node, for checks after decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Located<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a located value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located<T>, A::Error> {
                let line: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing line"))?;
                let column: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing column"))?;
                let value: T = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing value"))?;
                Ok(Located {
                    pos: Pos { line, column },
                    value,
                })
            }
        }
        d.deserialize_struct(
            LOCATED_MARKER,
            &["line", "column", "value"],
            V(std::marker::PhantomData),
        )
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Located<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// A raw node kept inside a decoded model (action parameters are decoded later,
/// by the action that owns them). Every level goes through [`Located`], so
/// positions survive when the deserializer is ours.
impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let located = Located::<ValueOfNodes>::deserialize(d)?;
        Ok(Node {
            pos: located.pos,
            value: located.value.0,
        })
    }
}

struct ValueOfNodes(Value);

impl<'de> Deserialize<'de> for ValueOfNodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueOfNodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<ValueOfNodes, E> {
                Ok(ValueOfNodes(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ValueOfNodes, E> {
                Ok(ValueOfNodes(Value::Int(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ValueOfNodes, E> {
                Ok(ValueOfNodes(Value::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<ValueOfNodes, E> {
                Ok(ValueOfNodes(Value::Str(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<ValueOfNodes, E> {
                Ok(ValueOfNodes(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValueOfNodes, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(ValueOfNodes(Value::Seq(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueOfNodes, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Node, Node>()? {
                    entries.push(entry);
                }
                Ok(ValueOfNodes(Value::Map(entries)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserializer<'de> for &Node {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result = match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(NodeSeq { iter: items.iter() }),
            Value::Map(entries) => visitor.visit_map(NodeMap {
                iter: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.or_at(self.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.or_at(self.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match name {
            LOCATED_MARKER => visitor
                .visit_seq(LocatedSeq {
                    node: self,
                    state: 0,
                })
                .map_err(|e| e.or_at(self.pos)),
            _ => {
                let _ = fields;
                self.deserialize_any(visitor)
            }
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match &self.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DecodeError| e.or_at(self.pos)),
            other => Err(DecodeError::at(
                self.pos,
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

struct LocatedSeq<'a> {
    node: &'a Node,
    state: u8,
}

impl<'de> SeqAccess<'de> for LocatedSeq<'_> {
    type Error = DecodeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        self.state += 1;
        match self.state {
            1 => seed
                .deserialize(self.node.pos.line.into_deserializer())
                .map(Some),
            2 => seed
                .deserialize(self.node.pos.column.into_deserializer())
                .map(Some),
            3 => seed.deserialize(self.node).map(Some),
            _ => Ok(None),
        }
    }
}

struct NodeSeq<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for NodeSeq<'_> {
    type Error = DecodeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(node)
                .map(Some)
                .map_err(|e| e.or_at(node.pos)),
            None => Ok(None),
        }
    }
}

struct NodeMap<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for NodeMap<'_> {
    type Error = DecodeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k).map(Some).map_err(|e| e.or_at(k.pos))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DecodeError as de::Error>::custom("value without a key"))?;
        seed.deserialize(node).map_err(|e| e.or_at(node.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small model with a required key, a number and a free node.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Demo {
        name: Located<String>,
        #[serde(default)]
        count: u32,
        #[serde(default)]
        extra: Option<Node>,
    }

    #[test]
    fn positions_follow_nodes() {
        let node = parse("name: x\ncount: 3\nextra: { a: 1 }\n").expect("parses");
        let demo: Demo = decode(&node).expect("decodes");
        assert_eq!(demo.name.pos, Pos { line: 1, column: 7 });
        assert_eq!(demo.count, 3);
        let extra = demo.extra.expect("extra kept");
        assert_eq!(extra.pos.line, 3);
        assert!(extra.get("a").is_some());
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let node = parse("name: x\n  \ncolor: red\n").expect("parses");
        let err = decode::<Demo>(&node).expect_err("unknown key");
        assert_eq!(err.pos, Some(Pos { line: 3, column: 1 }));
        assert!(err.message.contains("unknown field `color`"), "{err}");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let node = parse("name: x\ncount: lots\n").expect("parses");
        let err = decode::<Demo>(&node).expect_err("wrong type");
        assert_eq!(err.pos, Some(Pos { line: 2, column: 8 }));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("name: [unclosed\n").expect_err("bad yaml");
        assert!(err.pos.line >= 1);
        let err = parse("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(err.pos.line, 2, "{}", err.message);
    }
}
