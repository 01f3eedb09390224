//! Flight SQL authentication: every RPC needs credentials when users are
//! configured; bearer tokens expire; missing, bad and expired tokens are
//! refused on every RPC.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use prost::Message;
use quiver::server::ServerOptions;
use std::sync::Arc;
use tonic::transport::Channel;

use crate::flight::Fixture;

/// Every RPC but the handshake needs credentials; the handshake turns Basic
/// credentials into a bearer token; wrong credentials get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_needs_credentials_when_users_are_configured() {
    use quiver::flight::auth::Auth;
    let auth = Arc::new(Auth::new(
        [("ann".to_string(), "s3cret".to_string())],
        std::time::Duration::from_secs(600),
    ));
    let mut f = Fixture::start_with(ServerOptions {
        auth: Some(auth),
        ..ServerOptions::default()
    })
    .await;
    let unauthenticated = |e: arrow_flight::error::FlightError| {
        // tonic's description of the Unauthenticated code.
        let s = e.to_string();
        assert!(
            s.contains("does not have valid authentication credentials"),
            "{s}"
        );
    };
    // No credentials: queries, metadata and prepared statements are refused.
    unauthenticated(f.client.execute("SELECT 1".into(), None).await.unwrap_err());
    unauthenticated(f.client.get_catalogs().await.unwrap_err());
    unauthenticated(
        f.client
            .prepare("SELECT 1".into(), None)
            .await
            .err()
            .unwrap(),
    );
    unauthenticated(
        f.client
            .execute_update(
                "CREATE TABLE t (id BIGINT NOT NULL, PRIMARY KEY (id))".into(),
                None,
            )
            .await
            .unwrap_err(),
    );
    // Wrong password, unknown user.
    unauthenticated(f.client.handshake("ann", "wrong").await.unwrap_err());
    unauthenticated(f.client.handshake("bob", "s3cret").await.unwrap_err());
    // A DoGet with a ticket obtained by nobody is refused too.
    let ticket = arrow_flight::Ticket::new(
        arrow_flight::sql::ProstMessageExt::as_any(&arrow_flight::sql::TicketStatementQuery {
            statement_handle: "q:anyrun:SELECT 1".into(),
        })
        .encode_to_vec(),
    );
    unauthenticated(f.client.do_get(ticket.clone()).await.err().unwrap());

    // The handshake returns a bearer token; the client sends it from now on.
    f.client.handshake("ann", "s3cret").await.unwrap();
    let token = f.client.token().cloned().unwrap();
    assert!(token.len() > 64, "{token}");
    f.client
        .execute_update(
            "CREATE TABLE t (id BIGINT NOT NULL, PRIMARY KEY (id))".into(),
            None,
        )
        .await
        .unwrap();
    let rows = f.query("SELECT 41 + 1 AS x").await;
    assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(
        f.client
            .do_get(ticket)
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len(),
        1
    );

    // A forged token is refused.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    f.client.set_token(forged);
    unauthenticated(f.client.execute("SELECT 1".into(), None).await.unwrap_err());
    f.client.set_token(token);
    f.stop().await;
}

/// Tokens expire after the configured time; logging in again works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_expire() {
    use quiver::flight::auth::Auth;
    let auth = Arc::new(Auth::new(
        [("ann".to_string(), "pw".to_string())],
        std::time::Duration::from_millis(300),
    ));
    let mut f = Fixture::start_with(ServerOptions {
        auth: Some(auth),
        ..ServerOptions::default()
    })
    .await;
    f.client.handshake("ann", "pw").await.unwrap();
    f.query("SELECT 1").await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let e = f
        .client
        .execute("SELECT 1".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
    // (arrow-flight's client would send the stale token instead of Basic.)
    f.client.clear_token();
    f.client.handshake("ann", "pw").await.unwrap();
    f.query("SELECT 1").await;
    f.stop().await;
}

/// Calls every RPC of the Flight service with `authorization` set to
/// `header` (or none); returns each call's status code, or OK when it
/// returned data.
async fn call_every_rpc(
    channel: Channel,
    header: Option<&str>,
) -> Vec<(&'static str, tonic::Code)> {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::{Criteria, FlightData, HandshakeRequest};
    let mut c = FlightServiceClient::new(channel);
    fn req<T>(msg: T, header: Option<&str>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(h) = header {
            r.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        r
    }
    fn code(r: Result<(), tonic::Status>) -> tonic::Code {
        r.err().map_or(tonic::Code::Ok, |s| s.code())
    }
    /// The status of a streaming call up to its first message.
    async fn first<T: prost::Message + Default + 'static>(
        call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    ) -> tonic::Code {
        match call {
            Ok(r) => code(r.into_inner().message().await.map(|_| ())),
            Err(s) => s.code(),
        }
    }
    let cmd =
        arrow_flight::sql::ProstMessageExt::as_any(&arrow_flight::sql::CommandStatementQuery {
            query: "SELECT * FROM t".into(),
            transaction_id: None,
        })
        .encode_to_vec();
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(cmd);
    let ticket = arrow_flight::Ticket::new(
        arrow_flight::sql::ProstMessageExt::as_any(&arrow_flight::sql::TicketStatementQuery {
            statement_handle: "q:run:SELECT * FROM t".into(),
        })
        .encode_to_vec(),
    );
    let put = FlightData {
        flight_descriptor: Some(descriptor.clone()),
        ..Default::default()
    };
    let hs = HandshakeRequest {
        protocol_version: 0,
        payload: Default::default(),
    };
    let action = arrow_flight::Action::new("ClosePreparedStatement", Vec::<u8>::new());
    let puts = || futures::stream::iter(vec![put.clone()]);
    vec![
        (
            "Handshake",
            first(
                c.handshake(req(futures::stream::iter(vec![hs]), header))
                    .await,
            )
            .await,
        ),
        (
            "ListFlights",
            first(c.list_flights(req(Criteria::default(), header)).await).await,
        ),
        (
            "GetFlightInfo",
            code(
                c.get_flight_info(req(descriptor.clone(), header))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "PollFlightInfo",
            code(
                c.poll_flight_info(req(descriptor.clone(), header))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetSchema",
            code(
                c.get_schema(req(descriptor.clone(), header))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "DoGet",
            first(c.do_get(req(ticket.clone(), header)).await).await,
        ),
        ("DoPut", first(c.do_put(req(puts(), header)).await).await),
        (
            "DoExchange",
            first(c.do_exchange(req(puts(), header)).await).await,
        ),
        (
            "DoAction",
            first(c.do_action(req(action, header)).await).await,
        ),
        (
            "ListActions",
            first(c.list_actions(req(arrow_flight::Empty {}, header)).await).await,
        ),
    ]
}

/// Every RPC without a token, with a made-up token, with a forged secret
/// and with an expired token answers Unauthenticated and returns no data;
/// the same calls with a valid token get past authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_missing_bad_and_expired_tokens() {
    use quiver::flight::auth::Auth;
    let auth = Arc::new(Auth::new(
        [("ann".to_string(), "pw".to_string())],
        std::time::Duration::from_millis(500),
    ));
    let mut f = Fixture::start_with(ServerOptions {
        auth: Some(auth),
        ..ServerOptions::default()
    })
    .await;
    f.client.handshake("ann", "pw").await.unwrap();
    f.client
        .execute_update(
            "CREATE TABLE t (id BIGINT NOT NULL, PRIMARY KEY (id))".into(),
            None,
        )
        .await
        .unwrap();
    f.client
        .execute_update("INSERT INTO t VALUES (1)".into(), None)
        .await
        .unwrap();
    let token = f.client.token().cloned().unwrap();
    let valid = format!("Bearer {token}");
    let ok = call_every_rpc(f.channel.clone(), Some(&valid)).await;
    assert_eq!(ok.len(), 10);
    for (rpc, code) in &ok {
        assert_ne!(
            *code,
            tonic::Code::Unauthenticated,
            "{rpc} with a valid token"
        );
    }
    // The valid calls did reach the handlers: DoGet returned rows.
    assert!(ok
        .iter()
        .any(|(rpc, code)| *rpc == "DoGet" && *code == tonic::Code::Ok));

    let forged = format!("Bearer {}x", &token[..token.len() - 1]);
    let bad_states = [
        None,
        Some("Bearer nope"),
        Some(forged.as_str()),
        Some("Basic YW5uOndyb25n"),
    ];
    for header in bad_states {
        for (rpc, code) in call_every_rpc(f.channel.clone(), header).await {
            assert_eq!(code, tonic::Code::Unauthenticated, "{rpc} with {header:?}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    for (rpc, code) in call_every_rpc(f.channel.clone(), Some(&valid)).await {
        assert_eq!(
            code,
            tonic::Code::Unauthenticated,
            "{rpc} with an expired token"
        );
    }
    f.stop().await;
}
