//! The `lepton` binary, run as a user runs it: exit codes, `--json` shapes, error messages and
//! `--help`, and a small train → eval → predict loop on the embedded iris data.

mod archs;
mod compress;
mod compress_encoder;
mod distributed;
mod docs;
mod end_to_end;
mod errors;
mod explain;
mod finetune;
mod help;
mod inspect;
mod lora;
mod runs;
mod support;
mod text;
mod tune;
