//! A small ONNX graph builder over the [`onnx`](super::onnx) messages.
//!
//! It names values, collects nodes and initializers in order and turns them into a
//! [`ModelProto`]. Architectures use it through [`blocks`](super::blocks).
//! Inputs: op types, value names, tensors. Output: a `ModelProto`. Must not import `cli` or `report`.

use super::onnx::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto, DATA_TYPE_FLOAT, DATA_TYPE_INT64, DATA_TYPE_UINT8, IR_VERSION, OPSET,
};

/// onnxruntime's contrib operator domain (`MatMulNBits`), and the version of it the graphs use.
pub const MS_DOMAIN: (&str, i64) = ("com.microsoft", 1);

/// Collects the nodes, initializers and I/O of one graph.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
    /// Operator domains besides the default one that nodes use.
    domains: Vec<(&'static str, i64)>,
    /// Number of learned parameters added through [`GraphBuilder::param`].
    pub parameters: u64,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[i64]) -> String {
        self.inputs
            .push(ValueInfoProto::tensor(name, elem_type, dims));
        name.to_owned()
    }

    /// Declares a graph input whose axes may be named run-time sizes.
    pub fn input_dims(&mut self, name: &str, elem_type: i32, dims: &[Dim]) -> String {
        self.inputs
            .push(ValueInfoProto::with_dims(name, elem_type, dims));
        name.to_owned()
    }

    /// Declares a graph output whose axes may be named run-time sizes; `value` must be the
    /// output of the last node added (as for [`GraphBuilder::output`]).
    pub fn output_dims(&mut self, value: &str, name: &str, elem_type: i32, dims: &[Dim]) {
        self.output(value, name, elem_type, &[]);
        let last = self.outputs.len() - 1;
        self.outputs[last] = ValueInfoProto::with_dims(name, elem_type, dims);
    }

    /// Declares a graph output; `value` is renamed to `name` through an Identity-free alias:
    /// the last node producing `value` gets its output renamed.
    pub fn output(&mut self, value: &str, name: &str, elem_type: i32, dims: &[i64]) {
        for node in self.nodes.iter_mut().rev() {
            if let Some(o) = node.output.iter_mut().find(|o| o.as_str() == value) {
                *o = name.to_owned();
                break;
            }
        }
        self.outputs
            .push(ValueInfoProto::tensor(name, elem_type, dims));
    }

    /// Adds a float initializer holding learned parameters (counted in `parameters`).
    pub fn param(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.parameters += data.len() as u64;
        self.const_f32(name, dims, data)
    }

    /// Adds a float initializer that is not a learned parameter (masks, tables, scalars).
    pub fn const_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let mut raw = Vec::with_capacity(data.len() * 4);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.push_init(name, dims, DATA_TYPE_FLOAT, raw)
    }

    /// Adds a uint8 initializer holding `elements` learned parameters packed in `data` (4-bit
    /// codes, two a byte).
    pub fn param_u8(&mut self, name: &str, dims: &[usize], data: &[u8], elements: u64) -> String {
        self.parameters += elements;
        self.push_init(name, dims, DATA_TYPE_UINT8, data.to_vec())
    }

    /// Adds an int64 initializer (shapes, axes, indices).
    pub fn const_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let mut raw = Vec::with_capacity(data.len() * 8);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.push_init(name, dims, DATA_TYPE_INT64, raw)
    }

    /// True when an initializer named `name` was added.
    pub fn has_initializer(&self, name: &str) -> bool {
        self.initializers.iter().any(|t| t.name == name)
    }

    /// A fresh scalar float constant.
    pub fn scalar(&mut self, value: f32) -> String {
        let name = self.fresh("c");
        self.const_f32(&name, &[], &[value])
    }

    /// A fresh 1-D int64 constant (e.g. a Reshape target).
    pub fn ints(&mut self, values: &[i64]) -> String {
        let name = self.fresh("i");
        self.const_i64(&name, &[values.len()], values)
    }

    fn push_init(&mut self, name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.to_owned(),
            raw_data: raw,
        });
        name.to_owned()
    }

    /// A unique value name with `prefix`.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.node_in(("", 0), op, inputs, attrs)
    }

    /// Adds a node of the operator domain `domain` (name, version; `""` is the default one).
    pub fn node_in(
        &mut self,
        domain: (&'static str, i64),
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        if !domain.0.is_empty() && !self.domains.contains(&domain) {
            self.domains.push(domain);
        }
        let out = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![out.clone()],
            name: format!("n_{out}"),
            op_type: op.to_owned(),
            attribute: attrs,
            domain: domain.0.to_owned(),
        });
        out
    }

    /// Finishes the model.
    pub fn finish(self, name: &str, doc: &str) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: "webgpu-pool".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            doc_string: doc.to_owned(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.to_owned(),
                initializer: self.initializers,
                doc_string: String::new(),
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: std::iter::once(OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            })
            .chain(self.domains.iter().map(|&(d, v)| OperatorSetIdProto {
                domain: d.to_owned(),
                version: v,
            }))
            .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_renames_the_producing_node() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", DATA_TYPE_FLOAT, &[1, 2]);
        let w = g.param("w", &[2, 2], &[1.0, 0.0, 0.0, 1.0]);
        let y = g.node("MatMul", &[&x, &w], vec![]);
        g.output(&y, "y", DATA_TYPE_FLOAT, &[1, 2]);
        assert_eq!(g.parameters, 4);
        let m = g.finish("t", "");
        let graph = m.graph.unwrap();
        assert_eq!(graph.node[0].output, vec!["y".to_string()]);
        assert_eq!(graph.initializer[0].raw_data.len(), 16);
    }
}
