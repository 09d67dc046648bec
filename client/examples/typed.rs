//! Typed values: store Rust structs through a codec instead of bytes.
//!
//! Start a server (`cargo run --release -p shoal-server`), then run
//! `cargo run -p shoal-client --example typed [ADDR]`. Examples build with
//! every codec; an application enables `msgpack` itself (`json` is on by
//! default).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_client::{Client, Error, Json, MsgPack, Raw};

/// What an image-analysis service might keep per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ImageInfo {
    width: u32,
    height: u32,
    labels: Vec<String>,
    score: f32,
    /// Added in a later release: values written before it still read,
    /// as `None`.
    #[serde(default)]
    source: Option<String>,
}

#[tokio::main]
async fn main() -> shoal_client::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| shoal_client::DEFAULT_ENDPOINT.to_owned());
    let client = Client::builder()
        .endpoint(addr)
        .namespace("typed-example")
        .connect()
        .await?;
    client.flush().await?;

    let info = ImageInfo {
        width: 1920,
        height: 1080,
        labels: vec!["cat".into(), "sofa".into()],
        score: 0.93,
        source: Some("camera-7".into()),
    };

    // JSON: readable by `shoal get` and by any language.
    let as_json = client.typed::<ImageInfo, Json>();
    as_json
        .set_ttl("img:1", &info, Duration::from_secs(3600))
        .await?;
    let back = as_json.get("img:1").await?.expect("just stored");
    assert_eq!(back, info);
    let raw = client.get("img:1").await?.expect("just stored");
    println!(
        "json    {:>3} bytes: {}",
        raw.len(),
        String::from_utf8_lossy(&raw)
    );

    // MessagePack: the same struct, smaller, still with field names.
    let as_msgpack = client.typed::<ImageInfo, MsgPack>();
    as_msgpack.set("img:2", &info).await?;
    assert_eq!(as_msgpack.get("img:2").await?, Some(info.clone()));
    let raw = client.get("img:2").await?.expect("just stored");
    println!("msgpack {:>3} bytes", raw.len());

    // A value written before `source` existed still reads.
    client
        .set(
            "img:3",
            r#"{"width":640,"height":480,"labels":[],"score":0.5}"#,
        )
        .await?;
    let old = as_json.get("img:3").await?.expect("just stored");
    println!("an older value reads with source = {:?}", old.source);

    // Reading with the wrong codec is an error, never garbage.
    match as_json.get("img:2").await {
        Err(Error::Codec(e)) => println!("reading msgpack as json: {e}"),
        other => panic!("expected a codec error, got {other:?}"),
    }

    // Plain strings, with the raw codec.
    let names = client
        .with_namespace("typed-example")
        .typed::<String, Raw>();
    names.set("owner", &"ada".to_owned()).await?;
    println!("owner: {:?}", names.get("owner").await?);

    as_json.delete("img:1").await?;
    client.flush().await?;
    Ok(())
}
