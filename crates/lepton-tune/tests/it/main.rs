//! lepton-tune's integration tests: the search loop against a stand-in trainer (a shell script
//! that writes a deterministic learning curve), so the scheduling logic is tested without
//! training.

mod tpe_asha;
