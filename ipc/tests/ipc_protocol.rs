//! The IPC guarantees: every message survives a round trip, hostile bytes never
//! panic the decoder, many requests interleave on one channel, and oversized,
//! truncated or mismatched traffic closes the channel without hanging anyone.

use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::role::Role;
use latchgate_ipc::channel::{Channel, ChannelKind};
use latchgate_ipc::codec;
use latchgate_ipc::envelope::{Envelope, Hello, PROTOCOL_VERSION};
use latchgate_ipc::frame::{FRAGMENT_PAYLOAD, FramedSocket};
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::control::ControlMessage;
use latchgate_ipc::messages::executor_signer::{ReleasedSecret, SecretValue, SecretsReply, SecretsRequest};
use latchgate_ipc::messages::front_broker::{FrontReply, FrontRequest, PeerCred};
use latchgate_ipc::messages::status::{DependencyHealth, HealthReport, ProcessHealth, ProcessStatus, STATE_STORE};
use latchgate_ipc::{IpcError, RpcClient, serve};
use proptest::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use std::time::Duration;
use tokio_seqpacket::UnixSeqpacket;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let envelope = Envelope { protocol_version: PROTOCOL_VERSION, request_id: 7, body: value };
    let bytes = codec::encode(&envelope, 1 << 20).unwrap();
    let back: Envelope<T> = codec::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(back, envelope);
}

fn status(role: Role) -> ProcessStatus {
    let confinement = latchgate_core::confine::ConfinementReport {
        seccomp: latchgate_core::confine::LayerStatus::Enforced,
        landlock: latchgate_core::confine::LayerStatus::Degraded("no TCP rules".into()),
        landlock_abi: Some(3),
        no_new_privs: true,
        caps_dropped: true,
        bounding_set_empty: false,
        uid: 1000,
        gid: 1000,
    };
    ProcessStatus { role, pid: 42, uid: 1000, ready: true, confinement: Some(confinement) }
}

fn signed_grant() -> latchgate_core::grant::SignedGrant {
    let grant = latchgate_core::grant::Grant {
        grant_id: "g".into(),
        trace_id: "t".into(),
        action_id: "a".into(),
        action_version: "1".into(),
        provider_module_digest: "sha256:00".into(),
        request_hash: "sha256:11".into(),
        principal: "p".into(),
        session_id: "s".into(),
        epoch: 2,
        issued_at: 10,
        expires_at: 70,
        allowed_sinks: vec!["api.github.com".into()],
        approved_secrets: vec!["GITHUB_TOKEN".into()],
        approved_by: None,
        approved_by_jkt: None,
    };
    latchgate_core::grant::SignedGrant { grant, kid: "k".into(), signature: vec![7; 64] }
}

#[test]
fn every_message_type_round_trips() {
    let peer = PeerCred { uid: 1000, gid: 1000, pid: 4242 };
    round_trip(FrontRequest::Health { peer, front: status(Role::Front) });
    round_trip(FrontReply::Health(HealthReport {
        processes: vec![
            ProcessHealth { role: Role::Signer, up: true, status: Some(status(Role::Signer)), error: None },
            ProcessHealth { role: Role::Executor, up: false, status: None, error: Some("ipc_closed".into()) },
        ],
        dependencies: vec![DependencyHealth {
            name: STATE_STORE.into(),
            backend: "redis".into(),
            endpoint: Some("unix /run/redis.sock".into()),
            up: false,
            error: Some("replay_cache_unavailable".into()),
            detail: None,
        }],
    }));
    round_trip(FrontReply::Error(ApiError::new(ErrorCode::PolicyDenied).with_deny_reason("acl").with_retry_after(3)));
    round_trip(SignerRequest::Ping);
    round_trip(SignerReply::Pong(status(Role::Signer)));
    round_trip(SignerReply::Refused { code: "grant_unknown".into(), message: "no such grant".into() });
    round_trip(ExecutorRequest::Ping);
    round_trip(ExecutorReply::Pong { status: status(Role::Executor), signer_link_up: true });
    round_trip(ExecutorReply::Refused { code: "x".into(), message: "y".into() });
    round_trip(SecretsRequest::Ping);
    round_trip(SecretsReply::Pong(status(Role::Signer)));
    round_trip(SecretsReply::Refused { code: "x".into(), message: "y".into() });
    round_trip(SignerRequest::SecretsPresent { names: vec!["GITHUB_TOKEN".into()] });
    round_trip(SignerReply::SecretsPresent { present: vec![] });
    round_trip(SecretsRequest::Secrets { grant: Box::new(signed_grant()) });
    let released =
        ReleasedSecret { name: "GITHUB_TOKEN".into(), value: SecretValue::new("ghp_value".to_string().into()) };
    assert!(!format!("{released:?}").contains("ghp_value"), "Debug never shows a secret value");
    round_trip(SecretsReply::Secrets(vec![released]));
    round_trip(ControlMessage::Ready(status(Role::Front)));
    round_trip(ControlMessage::ReplacePeer { channel: ChannelKind::BrokerExecutor });
    round_trip(ControlMessage::Shutdown);
    round_trip(Hello::new(Role::Broker, ChannelKind::BrokerSigner));
}

/// bincode cannot skip a field: every type that crosses a channel must
/// round-trip with its optional fields both absent and present.
#[test]
fn grants_and_admin_requests_round_trip_with_and_without_optional_fields() {
    let grant = |approved_by: Option<&str>, jkt: Option<&str>| latchgate_core::grant::Grant {
        grant_id: "g".into(),
        trace_id: "t".into(),
        action_id: "fs.write".into(),
        action_version: "1.0.0".into(),
        provider_module_digest: "sha256:aa".into(),
        request_hash: "sha256:bb".into(),
        principal: "p".into(),
        session_id: "s".into(),
        epoch: 0,
        issued_at: 1,
        expires_at: 61,
        allowed_sinks: vec![],
        approved_secrets: vec![],
        approved_by: approved_by.map(Into::into),
        approved_by_jkt: jkt.map(Into::into),
    };
    round_trip(SignerRequest::SignGrant { grant: Box::new(grant(None, None)) });
    round_trip(SignerRequest::SignGrant { grant: Box::new(grant(Some("alice"), Some("jkt"))) });
    let peer = PeerCred { uid: 0, gid: 0, pid: 1 };
    let auth = latchgate_ipc::messages::front_broker::RequestAuth {
        authorization: "DPoP k".into(),
        dpop: "p".into(),
        method: "GET".into(),
        path: "/v1/admin/status".into(),
    };
    use latchgate_ipc::messages::admin::{AdminRequest, AuditQuery};
    for request in [
        AdminRequest::Status { front: status(Role::Front) },
        AdminRequest::AuditEvents(AuditQuery { trace_id: Some("t".into()), ..Default::default() }),
        AdminRequest::AuditExport { after_seq: 9, continuation: None },
        AdminRequest::AuditExport { after_seq: 9, continuation: Some("c".into()) },
        AdminRequest::Approve { approval_id: "a".into(), body: b"{}".to_vec() },
        AdminRequest::ListApprovals { status: None, limit: Some("5".into()) },
        AdminRequest::Metrics { front: status(Role::Front) },
    ] {
        round_trip(FrontRequest::Admin { peer, auth: auth.clone(), request });
    }
    round_trip(FrontRequest::PollApproval { peer, auth, approval_id: "a".into() });
    round_trip(FrontReply::Jsonl { body: "{}\n".into(), next_after_seq: None, continuation: None });
    round_trip(FrontReply::Jsonl { body: String::new(), next_after_seq: Some(3), continuation: Some("c".into()) });
    round_trip(FrontReply::Metrics { body: "# TYPE x counter\nx 1\n".into() });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<Envelope<FrontRequest>>(&bytes, 4096);
        let _ = codec::decode::<Envelope<FrontReply>>(&bytes, 4096);
        let _ = codec::decode::<Envelope<SignerReply>>(&bytes, 4096);
        let _ = codec::decode::<Envelope<ExecutorReply>>(&bytes, 4096);
        let _ = codec::decode::<Envelope<SecretsRequest>>(&bytes, 4096);
        let _ = codec::decode::<ControlMessage>(&bytes, 4096);
        let _ = codec::decode::<Hello>(&bytes, 64);
    }

    #[test]
    fn huge_declared_lengths_are_refused_before_allocating(len in 1u64 << 30..u64::MAX) {
        // A varint length prefix claiming gigabytes must fail on the limit, not allocate.
        let mut bytes = vec![1u8, 7]; // version 1, request_id 7
        bytes.push(0); // enum variant index of FrontReply::Health
        bytes.push(253); bytes.extend_from_slice(&len.to_le_bytes());
        prop_assert!(codec::decode::<Envelope<FrontReply>>(&bytes, 4096).is_err());
    }
}

/// A channel for exercising the machinery itself: the reply echoes the request.
struct Echo;
impl Channel for Echo {
    type Request = (u64, Vec<u8>);
    type Reply = (u64, usize);
    const KIND: ChannelKind = ChannelKind::FrontBroker;
    const CLIENT: Role = Role::Front;
    const SERVER: Role = Role::Broker;
    const MAX_MESSAGE_BYTES: usize = 512 * 1024;
}

async fn echo_pair() -> RpcClient<Echo> {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    tokio::spawn(serve::<Echo, _, _>(b, |(id, payload): (u64, Vec<u8>)| async move {
        // Later requests answer sooner: replies come back out of order.
        tokio::time::sleep(Duration::from_micros(1000 - (id % 1000))).await;
        (id, payload.len())
    }));
    RpcClient::<Echo>::connect(a).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_interleaved_requests_get_their_own_replies() {
    let client = echo_pair().await;
    let mut tasks = Vec::new();
    for id in 0..1000u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let payload = vec![0u8; (id as usize * 37) % 3000];
            let reply = client.call((id, payload.clone()), Duration::from_secs(20)).await.unwrap();
            assert_eq!(reply, (id, payload.len()));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn messages_larger_than_one_datagram_are_fragmented_and_reassembled() {
    let client = echo_pair().await;
    let big = vec![7u8; FRAGMENT_PAYLOAD * 3 + 123];
    assert_eq!(client.call((1, big.clone()), Duration::from_secs(5)).await.unwrap(), (1, big.len()));
}

#[tokio::test]
async fn oversized_request_is_refused_and_the_channel_keeps_working() {
    let client = echo_pair().await;
    let huge = vec![0u8; Echo::MAX_MESSAGE_BYTES + 1];
    let err = client.call((1, huge), Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, IpcError::Oversized { .. }), "{err:?}");
    assert_eq!(client.call((2, vec![1, 2, 3]), Duration::from_secs(5)).await.unwrap(), (2, 3));
}

#[tokio::test]
async fn oversized_fragment_run_from_a_hostile_peer_closes_the_channel() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let server = tokio::spawn(serve::<Echo, _, _>(b, |(id, p): (u64, Vec<u8>)| async move { (id, p.len()) }));
    // Complete the hello by hand, then announce a message bigger than the channel allows.
    let framed = FramedSocket::new(a, 1 << 30);
    framed.send(&codec::encode(&Hello::new(Role::Front, ChannelKind::FrontBroker), 64).unwrap()).await.unwrap();
    let _their_hello = framed.recv().await.unwrap();
    let mut first = vec![1u8];
    first.extend_from_slice(&((Echo::MAX_MESSAGE_BYTES as u32) + 1).to_le_bytes());
    first.extend_from_slice(&vec![0u8; FRAGMENT_PAYLOAD]);
    framed.socket().send(&first).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    assert!(matches!(reason, IpcError::Oversized { .. }), "{reason:?}");
}

#[tokio::test]
async fn garbage_after_hello_closes_the_channel_and_fails_pending_calls() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    // A "server" that says hello properly and then answers garbage.
    tokio::spawn(async move {
        let framed = FramedSocket::new(b, 1 << 20);
        let _ = framed.recv().await;
        framed.send(&codec::encode(&Hello::new(Role::Broker, ChannelKind::FrontBroker), 64).unwrap()).await.unwrap();
        let _request = framed.recv().await;
        framed.send(&[0xff; 40]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let client = RpcClient::<Echo>::connect(a).await.unwrap();
    let err = client.call((1, vec![]), Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, IpcError::Closed), "{err:?}");
    assert!(client.is_closed());
    assert!(matches!(client.call((2, vec![]), Duration::from_secs(1)).await, Err(IpcError::Closed)));
}

#[tokio::test]
async fn truncated_datagram_is_detected() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let framed = FramedSocket::new(b, 1 << 20);
    // One datagram larger than any legal frame: the receiver sees MSG_TRUNC.
    a.send(&vec![0u8; FRAGMENT_PAYLOAD + 64]).await.unwrap();
    assert!(matches!(framed.recv().await, Err(IpcError::Truncated)));
}

#[tokio::test]
async fn hello_from_the_wrong_role_is_refused() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let server = tokio::spawn(serve::<Echo, _, _>(b, |(id, p): (u64, Vec<u8>)| async move { (id, p.len()) }));
    let framed = FramedSocket::new(a, 1 << 20);
    // The executor pretending to be the front on the front-broker channel.
    framed.send(&codec::encode(&Hello::new(Role::Executor, ChannelKind::FrontBroker), 64).unwrap()).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    assert!(matches!(reason, IpcError::WrongPeer { .. }), "{reason:?}");
}

#[tokio::test]
async fn hello_with_another_protocol_version_is_refused() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let server = tokio::spawn(serve::<Echo, _, _>(b, |(id, p): (u64, Vec<u8>)| async move { (id, p.len()) }));
    let framed = FramedSocket::new(a, 1 << 20);
    let mut hello = Hello::new(Role::Front, ChannelKind::FrontBroker);
    hello.protocol_version = PROTOCOL_VERSION + 1;
    framed.send(&codec::encode(&hello, 64).unwrap()).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    assert!(matches!(reason, IpcError::VersionMismatch { .. }), "{reason:?}");
}

#[tokio::test]
async fn peer_uid_check_refuses_an_unexpected_uid() {
    let (a, _b) = UnixSeqpacket::pair().unwrap();
    let me = nix::unistd::geteuid().as_raw();
    latchgate_ipc::peer::check_peer_uid(&a, me).unwrap();
    let err = latchgate_ipc::peer::check_peer_uid(&a, me.wrapping_add(1)).unwrap_err();
    assert!(matches!(err, IpcError::WrongPeerUid { .. }));
}

#[tokio::test]
async fn control_socket_passes_a_replacement_channel_end() {
    use latchgate_ipc::control::ControlSocket;
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let (sup, child) = (ControlSocket::new(a), ControlSocket::new(b));
    let (x, y) = UnixSeqpacket::pair().unwrap();
    let fd: std::os::fd::OwnedFd = x.into();
    sup.send(&ControlMessage::ReplacePeer { channel: ChannelKind::BrokerSigner }, Some(&fd)).await.unwrap();
    let (message, got) = child.recv().await.unwrap().unwrap();
    assert_eq!(message, ControlMessage::ReplacePeer { channel: ChannelKind::BrokerSigner });
    // The passed fd is a working end of the pair.
    let received = UnixSeqpacket::try_from(got.unwrap()).unwrap();
    received.send(b"hi").await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(y.recv(&mut buf).await.unwrap().bytes_read(), 2);
}
