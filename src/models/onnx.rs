//! Hand-written prost messages for the subset of `onnx.proto` that the graph writer emits.
//!
//! Field numbers are those of `onnx/onnx.proto` (IR version 8, opset 17). Only the fields the
//! writer sets are declared; a decoder skips the rest, so files stay valid ONNX. We derive
//! `prost::Message` by hand instead of running protoc in a build script: the subset is small and
//! a build-time protoc would be one more tool every developer and CI machine must install.
//! Repeated scalars are written unpacked, as proto2 (which `onnx.proto` uses) does by default.
//! Must not import anything but prost.

/// `TensorProto.DataType.FLOAT`.
pub const DATA_TYPE_FLOAT: i32 = 1;
/// `TensorProto.DataType.INT64`.
pub const DATA_TYPE_INT64: i32 = 7;
/// `TensorProto.DataType.UINT8`.
pub const DATA_TYPE_UINT8: i32 = 2;
/// The IR version written into every model (IR 8 goes with opset 17).
pub const IR_VERSION: i64 = 8;
/// The default-domain opset every graph targets (LayerNormalization exists from 17).
pub const OPSET: i64 = 17;

/// `AttributeProto.AttributeType` values used by the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum AttributeType {
    /// A single float (`f`).
    Float = 1,
    /// A single int64 (`i`).
    Int = 2,
    /// A list of int64 (`ints`).
    Ints = 7,
}

/// `onnx.ModelProto`: the top-level container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version of the file format.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Name of the tool that wrote the file.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Version of that tool.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Free-form description.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The computation graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets the graph uses.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Operator domain; empty means the default `ai.onnx` domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Opset version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights and helper constants).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free-form description.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Graph inputs (not including initializers).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `onnx.NodeProto`: one operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name (unique in the graph).
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator type, e.g. `MatMul`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Operator attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Operator domain; empty for `ai.onnx`.
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `onnx.AttributeProto` (the scalar and int-list kinds only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Float value when `type` is FLOAT.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// Int value when `type` is INT.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// Int list when `type` is INTS.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// The `AttributeType` discriminant.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

impl AttributeProto {
    /// An INT attribute.
    pub fn int(name: &str, value: i64) -> Self {
        AttributeProto {
            name: name.to_owned(),
            i: value,
            r#type: AttributeType::Int as i32,
            ..Default::default()
        }
    }

    /// A FLOAT attribute.
    pub fn float(name: &str, value: f32) -> Self {
        AttributeProto {
            name: name.to_owned(),
            f: value,
            r#type: AttributeType::Float as i32,
            ..Default::default()
        }
    }

    /// An INTS attribute.
    pub fn ints(name: &str, values: &[i64]) -> Self {
        AttributeProto {
            name: name.to_owned(),
            ints: values.to_vec(),
            r#type: AttributeType::Ints as i32,
            ..Default::default()
        }
    }
}

/// `onnx.TensorProto`; data always goes in `raw_data` (little-endian).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// `DataType` discriminant.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Tensor name (an initializer's name is the value name nodes refer to).
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian element bytes, row-major.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

/// `onnx.ValueInfoProto`: name and type of a graph input or output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`, tensor kind only (`tensor_type` is a member of the `value` oneof).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    /// Element `DataType`.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Static shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// One entry per axis.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<TensorShapeDimension>,
}

/// `onnx.TensorShapeProto.Dimension`: `dim_value` or `dim_param`, the `value` oneof's members.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeDimension {
    /// The fixed size of the axis.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// The name of a size known only at run time (axes sharing a name share the size).
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// One axis of a graph input or output: a fixed size or a named run-time size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A size known at run time, by name (`S`, `P`, `T`).
    Named(&'static str),
}

impl ValueInfoProto {
    /// A tensor value with a static shape.
    pub fn tensor(name: &str, elem_type: i32, dims: &[i64]) -> Self {
        let dims: Vec<Dim> = dims.iter().map(|&d| Dim::Fixed(d)).collect();
        Self::with_dims(name, elem_type, &dims)
    }

    /// A tensor value whose axes may be named run-time sizes.
    pub fn with_dims(name: &str, elem_type: i32, dims: &[Dim]) -> Self {
        ValueInfoProto {
            name: name.to_owned(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| match *d {
                                Dim::Fixed(v) => TensorShapeDimension {
                                    dim_value: Some(v),
                                    dim_param: None,
                                },
                                Dim::Named(n) => TensorShapeDimension {
                                    dim_value: None,
                                    dim_param: Some(n.to_owned()),
                                },
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn model_round_trips_through_prost() {
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "webgpu-pool".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![NodeProto {
                    input: vec!["x".into(), "w".into()],
                    output: vec!["y".into()],
                    name: "n0".into(),
                    op_type: "MatMul".into(),
                    attribute: vec![AttributeProto::ints("perm", &[0, 2, 1])],
                    ..Default::default()
                }],
                initializer: vec![TensorProto {
                    dims: vec![2, 2],
                    data_type: DATA_TYPE_FLOAT,
                    name: "w".into(),
                    raw_data: vec![0; 16],
                }],
                input: vec![ValueInfoProto::tensor("x", DATA_TYPE_FLOAT, &[1, 2])],
                output: vec![ValueInfoProto::tensor("y", DATA_TYPE_FLOAT, &[1, 2])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = model.encode_to_vec();
        let back = ModelProto::decode(bytes.as_slice()).expect("decode");
        assert_eq!(back, model);
    }

    #[test]
    fn field_numbers_match_onnx_proto() {
        // ModelProto.ir_version is field 1 varint: key byte 0x08.
        let m = ModelProto {
            ir_version: 8,
            ..Default::default()
        };
        assert_eq!(m.encode_to_vec(), vec![0x08, 8]);
        // TensorProto.raw_data is field 9, length-delimited: key 0x4a.
        let t = TensorProto {
            raw_data: vec![1],
            ..Default::default()
        };
        assert_eq!(t.encode_to_vec(), vec![0x4a, 1, 1]);
        // Unpacked repeated dims (field 1): one key per element.
        let t = TensorProto {
            dims: vec![3, 4],
            ..Default::default()
        };
        assert_eq!(t.encode_to_vec(), vec![0x08, 3, 0x08, 4]);
        // AttributeProto.type is field 20 varint: key 0xa0 0x01.
        let a = AttributeProto {
            r#type: 2,
            ..Default::default()
        };
        assert_eq!(a.encode_to_vec(), vec![0xa0, 0x01, 2]);
    }
}
