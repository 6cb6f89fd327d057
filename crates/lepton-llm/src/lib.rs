//! lepton-llm
