//! The key stream behind [`Client::scan`]: follows the server's page
//! stream and resumes from the last cursor when it breaks.

use std::vec;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::codec::Streaming;

use crate::call::{with_deadline, within};
use crate::client::Client;
use crate::convert;
use crate::error::Result;
use crate::retry::Idempotency;
use crate::types::{ScanOptions, ScanPage};

/// Where a scan stands between two keys.
struct ScanState {
    client: Client,
    /// The request that (re)opens the server stream: its cursor and limit
    /// follow the pages received so far.
    request: pb::ScanRequest,
    pages: Option<Streaming<pb::ScanResponse>>,
    buffered: vec::IntoIter<Bytes>,
    /// Failed attempts since the last page arrived.
    failures: u32,
    done: bool,
}

pub(crate) fn keys(
    client: Client,
    options: ScanOptions,
) -> impl Stream<Item = Result<Bytes>> + Send + Unpin + 'static {
    let state = ScanState {
        request: convert::scan_request(&client.namespace, &options),
        client,
        pages: None,
        buffered: Vec::new().into_iter(),
        failures: 0,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(state, next_key))
}

async fn next_key(mut state: ScanState) -> Option<(Result<Bytes>, ScanState)> {
    loop {
        if let Some(key) = state.buffered.next() {
            return Some((Ok(key), state));
        }
        if state.done {
            return None;
        }
        match state.next_page().await {
            Ok(Some(page)) => state.accept(page),
            Ok(None) => state.done = true,
            Err(error) => {
                state.pages = None;
                state.failures += 1;
                if !state
                    .client
                    .retry
                    .should_retry(Idempotency::Idempotent, &error, state.failures)
                {
                    state.done = true;
                    return Some((Err(error), state));
                }
                let wait = state.client.retry.backoff(state.failures);
                tracing::debug!(%error, attempts = state.failures, ?wait, "resuming shoal scan");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl ScanState {
    /// The next page, opening the server stream first when needed. Each
    /// step must finish within the client's timeout.
    async fn next_page(&mut self) -> Result<Option<pb::ScanResponse>> {
        let timeout = self.client.timeout;
        let pages = match &mut self.pages {
            Some(pages) => pages,
            None => {
                let mut cache = self.client.node.cache.clone();
                // No grpc-timeout: it would bound the whole scan, not a page.
                let request = with_deadline(self.request.clone(), None);
                let opened = within(timeout, async {
                    Ok(cache.scan(request).await?.into_inner())
                })
                .await?;
                self.pages.insert(opened)
            }
        };
        within(timeout, async { Ok(pages.message().await?) }).await
    }

    /// Takes a page's keys and moves the resume point past them.
    fn accept(&mut self, page: pb::ScanResponse) {
        self.failures = 0;
        if self.request.limit > 0 {
            let received = u64::try_from(page.keys.len()).unwrap_or(u64::MAX);
            self.request.limit = self.request.limit.saturating_sub(received);
            // A remaining limit of 0 would mean "unlimited" on resume.
            if self.request.limit == 0 {
                self.done = true;
            }
        }
        if page.cursor.is_empty() {
            self.done = true;
        }
        self.request.cursor = page.cursor;
        self.buffered = page.keys.into_iter();
    }
}

/// Scans, beside the stream that follows them.
impl Client {
    /// One page of matching keys and the cursor of the next page; pass it in
    /// [`ScanOptions::cursor`] to continue.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad pattern, page size or cursor.
    pub async fn scan_page(&self, options: ScanOptions) -> Result<ScanPage> {
        let request = convert::scan_request(&self.namespace, &options);
        self.run(Idempotency::Idempotent, |timeout| {
            let mut cache = self.node.cache.clone();
            let request = with_deadline(request.clone(), timeout);
            async move {
                let mut pages = cache.scan(request).await?.into_inner();
                Ok(pages
                    .message()
                    .await?
                    .map(convert::scan_page)
                    .unwrap_or_default())
            }
        })
        .await
    }

    /// Every matching key, page after page, as a stream.
    ///
    /// The scan follows one server stream; each page must arrive within the
    /// handle's timeout. If the stream breaks with a transient error, the
    /// scan resumes from the last page's cursor (up to the retry limit), so
    /// a key present for the whole scan is yielded exactly once.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// use shoal_client::ScanOptions;
    /// use tokio_stream::StreamExt;
    ///
    /// let mut keys = client.scan(ScanOptions::matching("session:*"));
    /// while let Some(key) = keys.next().await {
    ///     println!("{:?}", key?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn scan(
        &self,
        options: ScanOptions,
    ) -> impl Stream<Item = Result<Bytes>> + Send + Unpin + 'static {
        keys(self.clone(), options)
    }

    /// Every matching key, collected.
    ///
    /// # Errors
    ///
    /// As [`scan_page`](Self::scan_page).
    pub async fn scan_all(&self, options: ScanOptions) -> Result<Vec<Bytes>> {
        use tokio_stream::StreamExt as _;
        let mut keys = Vec::new();
        let mut stream = self.scan(options);
        while let Some(key) = stream.next().await {
            keys.push(key?);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(limit: u64) -> ScanState {
        let client = Client::builder()
            .endpoint("127.0.0.1:1")
            .connect_lazy()
            .unwrap();
        let options = ScanOptions {
            limit,
            ..ScanOptions::matching("k*")
        };
        ScanState {
            request: convert::scan_request(client.namespace(), &options),
            client,
            pages: None,
            buffered: Vec::new().into_iter(),
            failures: 2,
            done: false,
        }
    }

    fn page(keys: &[&'static str], cursor: &'static str) -> pb::ScanResponse {
        pb::ScanResponse {
            keys: keys
                .iter()
                .map(|k| Bytes::from_static(k.as_bytes()))
                .collect(),
            cursor: Bytes::from_static(cursor.as_bytes()),
        }
    }

    #[tokio::test]
    async fn pages_move_the_resume_cursor() {
        let mut state = state(0);
        state.accept(page(&["k1", "k2"], "c1"));
        assert_eq!(state.request.cursor, "c1");
        assert_eq!(state.failures, 0);
        assert!(!state.done);
        assert_eq!(state.buffered.len(), 2);
        state.accept(page(&["k3"], ""));
        assert!(state.done);
    }

    #[tokio::test]
    async fn the_limit_shrinks_with_each_page() {
        let mut state = state(3);
        state.accept(page(&["k1", "k2"], "c1"));
        assert_eq!(state.request.limit, 1);
        assert!(!state.done);
        state.accept(page(&["k3"], "c2"));
        assert!(
            state.done,
            "a resumed request must not ask for an unlimited scan"
        );
    }
}
