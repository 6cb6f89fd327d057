//! Integration tests for lepton-llm.
