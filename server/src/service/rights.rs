//! The role each request needs in the namespace it names: the whole table
//! in one place, so that a reader can check it at a glance.
//!
//! Handlers call [`ServiceState::authorize`](super::ServiceState::authorize)
//! before they touch the namespace; batch items, SetBatch chunks and
//! pipeline commands go through the same check one by one.

use shoal_proto::v1 as pb;

use crate::auth::Role;

/// A request that acts in one namespace with one role.
pub(crate) trait Scoped {
    /// The role the request needs.
    const ROLE: Role;
    /// The namespace it names (empty for `default`).
    fn namespace(&self) -> &str;
}

macro_rules! scoped {
    ($role:ident: $($request:ident),* $(,)?) => {
        $(
            impl Scoped for pb::$request {
                const ROLE: Role = Role::$role;
                fn namespace(&self) -> &str {
                    &self.namespace
                }
            }
        )*
    };
}

scoped!(Read:
    GetRequest, DescribeRequest, ScanRequest, CountRequest,
    HGetRequest, HmGetRequest, HGetAllRequest, HLenRequest, HExistsRequest,
    LRangeRequest, LLenRequest, LIndexRequest,
    SMembersRequest, SIsMemberRequest, SmIsMemberRequest, SCardRequest,
    SRandMemberRequest, SInterRequest, SUnionRequest, SDiffRequest,
    GetBatchRequest, WatchRequest,
);

scoped!(Write:
    SetRequest, DeleteRequest, IncrementRequest, UpdateTtlRequest,
    HSetRequest, HDelRequest, HIncrByRequest,
    LPushRequest, RPushRequest, LPopRequest, RPopRequest, LTrimRequest,
    LSetRequest, LRemRequest,
    SAddRequest, SRemRequest, SPopRequest,
    SetBatchRequest, DeleteBatchRequest,
);

scoped!(Admin: FlushRequest, DropNamespaceRequest);
