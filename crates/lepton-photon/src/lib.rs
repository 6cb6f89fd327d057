//! lepton-photon
