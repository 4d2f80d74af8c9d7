//! The one thing a benchmark needs from a store: a client connection that can get and put.

use std::future::Future;
use std::sync::Arc;

use synod_client::shardkv::ShardKvClient;
use synod_client::KvClient;

use crate::BenchError;

/// One benchmark client's connection to a store; it has one operation outstanding at a time.
pub trait Store: Send + 'static {
    /// Reads `key` (linearizably, where the store offers a choice).
    fn get(&mut self, key: &str) -> impl Future<Output = Result<(), BenchError>> + Send;
    /// Sets `key` to `value`, durably where the store is configured so.
    fn put(
        &mut self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), BenchError>> + Send;
}

/// synod's Paxos KV through its native client. Clones share one [`KvClient`], whose session
/// pool gives every concurrent caller its own session and connection.
#[derive(Clone)]
pub struct KvStore(pub Arc<KvClient>);

impl Store for KvStore {
    async fn get(&mut self, key: &str) -> Result<(), BenchError> {
        self.0.get(key).await?;
        Ok(())
    }

    async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        Ok(self.0.put(key, value).await?)
    }
}

/// synod's sharded KV through its native client, which asks the controllers for the
/// configuration and sends each operation to the group that owns its key. Clones share one
/// [`ShardKvClient`] (and so one cached configuration and one session pool).
#[derive(Clone)]
pub struct ShardKvStore(pub Arc<ShardKvClient>);

impl Store for ShardKvStore {
    async fn get(&mut self, key: &str) -> Result<(), BenchError> {
        self.0.get(key).await?;
        Ok(())
    }

    async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        Ok(self.0.put(key, value).await?)
    }
}
