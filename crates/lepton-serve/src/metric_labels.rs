//! The label sets of the Prometheus metrics, shared by [`crate::metrics`] and
//! [`crate::llm_metrics`] (so neither file imports the other's internals).

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub model: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

/// A served model and an explanation method (bounded: the methods are a fixed set, anything
/// else is refused before it is timed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExplainLabels {
    pub model: String,
    pub method: String,
}
