//! lepton-data
