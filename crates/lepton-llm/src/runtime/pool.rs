//! The thread team the matmuls and attention share: `lepton-quant`'s (one team per process).

pub(crate) use lepton_quant::pool::{split, Pool};
