//! How much value compression saves on feature vectors, as the server's
//! own memory statistics see it.
//!
//! Stores 10 000 vectors of 256 `f32` (1 KiB each, as raw little-endian
//! bytes) three times over, with compression off, zstd and lz4, for three
//! kinds of vectors:
//!
//! - dense: Gaussian floats, like a normalised embedding. Their mantissas
//!   are noise, so they barely compress, and a compressed copy that is not
//!   smaller is stored uncompressed.
//! - quantised: the same vectors rounded to 256 levels (an int8-quantised
//!   index served as `f32`): few distinct values.
//! - sparse: post-ReLU activations, about 70% exact zeros.
//!
//! Start a server (`cargo run --release -p shoal-server`), then run
//! `cargo run --release -p shoal-client --example compression [ADDR]`.
//! It writes to namespaces named `compression-*` and flushes them after.

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use shoal_client::{Client, Compression};

const VECTORS: usize = 10_000;
const DIMENSIONS: usize = 256;
/// Writes in flight at once.
const CONCURRENCY: usize = 64;

/// Makes one vector from a seeded generator.
type Generator = fn(&mut StdRng) -> Vec<f32>;

fn dense(rng: &mut StdRng) -> Vec<f32> {
    let normal = Normal::new(0.0f32, 1.0).expect("valid");
    let mut v: Vec<f32> = (0..DIMENSIONS).map(|_| normal.sample(rng)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn quantised(rng: &mut StdRng) -> Vec<f32> {
    let v = dense(rng);
    let scale = v.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 127.0;
    v.iter().map(|x| (x / scale).round() * scale).collect()
}

fn sparse(rng: &mut StdRng) -> Vec<f32> {
    // Shifted so that about 70% fall below zero and are cut to 0.
    let normal = Normal::new(-0.52f32, 1.0).expect("valid");
    (0..DIMENSIONS)
        .map(|_| normal.sample(rng).max(0.0))
        .collect()
}

fn to_bytes(v: &[f32]) -> Bytes {
    v.iter()
        .flat_map(|x| x.to_le_bytes())
        .collect::<Vec<u8>>()
        .into()
}

/// Stores every vector under `namespace` and returns (bytes the server
/// holds as values, the namespace's memory figure from Stats).
async fn store(
    client: &Client,
    namespace: &str,
    vectors: &[Bytes],
) -> shoal_client::Result<(u64, u64)> {
    let client = client.with_namespace(namespace);
    client.flush().await?;
    let writes = vectors.iter().enumerate().map(|(i, vector)| {
        let client = client.clone();
        let vector = vector.clone();
        async move { client.set(format!("vec:{i:05}"), vector).await }
    });
    let mut writes = stream::iter(writes).buffer_unordered(CONCURRENCY);
    while let Some(result) = writes.next().await {
        result?;
    }
    let keys: Vec<String> = (0..vectors.len()).map(|i| format!("vec:{i:05}")).collect();
    let stored: u64 = client
        .describe(&keys)
        .await?
        .iter()
        .filter_map(|info| info.meta.map(|meta| meta.size))
        .sum();
    let stats = client.stats().await?;
    let memory = stats
        .namespaces
        .iter()
        .find(|ns| ns.namespace == namespace)
        .map_or(0, |ns| ns.memory_bytes);
    // Every client reads the values back, compressed or not.
    let plain = client.with_namespace(namespace);
    assert_eq!(plain.get("vec:00042").await?.as_ref(), Some(&vectors[42]));
    Ok((stored, memory))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> shoal_client::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| shoal_client::DEFAULT_ENDPOINT.to_owned());
    let connect = |compression: Option<Compression>| {
        let builder = Client::builder().endpoint(addr.clone()).connections(2);
        let builder = match compression {
            Some(compression) => builder.compression(compression),
            None => builder,
        };
        builder.connect()
    };
    let clients = [
        ("off", connect(None).await?),
        ("zstd", connect(Some(Compression::zstd())).await?),
        ("lz4", connect(Some(Compression::lz4())).await?),
    ];

    let generators: [(&str, Generator); 3] = [
        ("dense", dense),
        ("quantised", quantised),
        ("sparse", sparse),
    ];
    println!(
        "{VECTORS} vectors x {DIMENSIONS} f32 = {:.2} MiB of values per run\n",
        mib((VECTORS * DIMENSIONS * 4) as u64)
    );
    println!(
        "{:<10} {:<5} {:>14} {:>16} {:>14}",
        "vectors", "codec", "stored (MiB)", "server memory", "memory saved"
    );
    for (kind, generate) in generators {
        let mut rng = StdRng::seed_from_u64(7);
        let vectors: Vec<Bytes> = (0..VECTORS)
            .map(|_| to_bytes(&generate(&mut rng)))
            .collect();
        let mut baseline = None;
        for (name, client) in &clients {
            let namespace = format!("compression-{kind}-{name}");
            let (stored, memory) = store(client, &namespace, &vectors).await?;
            let base = *baseline.get_or_insert(memory);
            let saved = base.saturating_sub(memory);
            println!(
                "{kind:<10} {name:<5} {:>14.2} {:>12.2} MiB {:>9.2} MiB ({:.0}%)",
                mib(stored),
                mib(memory),
                mib(saved),
                100.0 * saved as f64 / base as f64,
            );
            client.with_namespace(&namespace).flush().await?;
        }
    }
    Ok(())
}
