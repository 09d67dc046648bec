//! Behaviour of the engine as a user of the embedded cache sees it, one
//! file per subject; this file holds what they share.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;

use super::*;

const START_MS: u64 = 1_700_000_000_000;

fn engine_at(clock: &ManualClock) -> Engine {
    let config = EngineConfig {
        shards_per_namespace: 4,
        ..EngineConfig::default()
    };
    Engine::with_parts(config, Arc::new(clock.clone()), None)
}

fn setup() -> (ManualClock, Engine, Arc<Namespace>) {
    let clock = ManualClock::new(START_MS);
    let engine = engine_at(&clock);
    let namespace = engine.namespace("test").expect("valid namespace");
    (clock, engine, namespace)
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn ttl(ms: i64) -> SetOptions {
    SetOptions {
        expiry: Expiry::AfterMs(ms),
        ..SetOptions::default()
    }
}

#[derive(Default)]
struct RecordingSink {
    records: Mutex<Vec<ChangeRecord>>,
    flushes: Mutex<Vec<FlushRecord>>,
}

impl ChangeSink for RecordingSink {
    fn record(&self, change: ChangeRecord) {
        self.records.lock().push(change);
    }
    fn flushed(&self, flush: FlushRecord) {
        self.flushes.lock().push(flush);
    }
}

fn b(text: &str) -> Bytes {
    bytes(text)
}

mod changes;
mod collections;
mod eviction;
mod expiry;
mod memory;
mod model;
mod namespaces;
mod replay;
mod scan;
mod strings;
