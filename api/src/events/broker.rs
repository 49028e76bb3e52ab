//! RabbitMQ through lapin: the relay's publisher (persistent messages,
//! publisher confirms) and each process's consumer, which feeds its hub from
//! a queue of its own bound to the exchange.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::maybe_done;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Hub;
use super::wire::Message;

/// How long the relay gives the broker to take and confirm a batch
/// (connecting included); past it the batch counts as not published.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting and setting up a consumer may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest pause between two attempts to reach the broker.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The most messages a process's queue holds; past it the oldest go (a
/// process that cannot keep up must not fill the broker's memory; its
/// clients' book streams notice the gap and take a new snapshot).
const QUEUE_MAX_LENGTH: i64 = 100_000;

/// A connection and a channel to the broker of `url`, with `exchange`
/// declared as the api uses it (a durable topic exchange); also for
/// consumers of its own, such as the tests' and the benchmark's.
pub async fn open_exchange(
    url: &str,
    exchange: &str,
) -> Result<(Connection, Channel), lapin::Error> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel))
}

/// The relay's side: publishes batches and waits for the broker's confirms.
pub struct Publisher {
    url: String,
    exchange: String,
    open: Option<(Connection, Channel)>,
}

impl Publisher {
    pub fn new(url: String, exchange: String) -> Publisher {
        Publisher {
            url,
            exchange,
            open: None,
        }
    }

    async fn channel(&mut self) -> Result<Channel, String> {
        if let Some((connection, channel)) = &self.open
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        self.open = None;
        let (connection, channel) = open_exchange(&self.url, &self.exchange)
            .await
            .map_err(|e| format!("cannot reach the broker: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("the broker refused publisher confirms: {e}"))?;
        self.open = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes `messages` in order without waiting for the broker: the
    /// returned task ends once the broker confirmed every one (`Ok`, with
    /// when), or with what failed. A failure to send drops the connection
    /// ([`reset`]) and is returned at once: nothing counts as published then.
    ///
    /// [`reset`]: Publisher::reset
    pub async fn send(&mut self, messages: &[Message]) -> Result<Confirms, String> {
        let sent = tokio::time::timeout(PUBLISH_TIMEOUT, self.try_send(messages)).await;
        let outcome = sent.unwrap_or_else(|_| {
            Err(format!(
                "the broker took nothing within {} s",
                PUBLISH_TIMEOUT.as_secs()
            ))
        });
        if outcome.is_err() {
            self.reset();
        }
        outcome
    }

    /// Drops the connection: the next [`send`](Publisher::send) opens a new
    /// one (after a confirm failed, for instance).
    pub fn reset(&mut self) {
        if let Some((connection, _)) = self.open.take() {
            // A dead connection never answers a close: do not wait for it.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    connection.close(0, "publish failed".into()),
                )
                .await;
            });
        }
    }

    async fn try_send(&mut self, messages: &[Message]) -> Result<Confirms, String> {
        let channel = self.channel().await?;
        let mut publishes: Vec<_> = messages
            .iter()
            .map(|message| {
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(message.message_id.as_str().into());
                Box::pin(maybe_done(channel.basic_publish(
                    self.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    properties,
                )))
            })
            .collect();
        // A publish queues its frames on the channel at its first poll and
        // then waits until the connection's I/O loop wrote them. Polled once
        // each, in the batch's order, before any is awaited, the batch is
        // queued whole and goes out in one write, where awaiting one message
        // after the other took a write and two thread hand-offs a message.
        std::future::poll_fn(|cx| {
            for publish in &mut publishes {
                let _ = publish.as_mut().poll(cx);
            }
            Poll::Ready(())
        })
        .await;
        let mut confirms = Vec::with_capacity(messages.len());
        for mut publish in publishes {
            publish.as_mut().await;
            let confirm = publish
                .as_mut()
                .take_output()
                .ok_or_else(|| "a publish ended without an outcome".to_owned())?
                .map_err(|e| format!("publishing failed: {e}"))?;
            confirms.push(confirm);
        }
        let sent = std::time::Instant::now();
        Ok(tokio::spawn(async move {
            let confirmed = async {
                for confirm in confirms {
                    match confirm.await {
                        Ok(Confirmation::Ack(_)) => {}
                        Ok(other) => return Err(format!("the broker did not confirm: {other:?}")),
                        Err(e) => return Err(format!("waiting for the broker's confirm: {e}")),
                    }
                }
                metrics::histogram!("trade_engine_event_confirm_seconds")
                    .record(sent.elapsed().as_secs_f64());
                Ok(chrono::Utc::now())
            };
            tokio::time::timeout(PUBLISH_TIMEOUT, confirmed)
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "the broker confirmed nothing within {} s",
                        PUBLISH_TIMEOUT.as_secs()
                    ))
                })
        }))
    }
}

/// The broker's answer to one batch: `Ok` with the time the last confirm
/// arrived, once it confirmed every message.
pub type Confirms = JoinHandle<Result<chrono::DateTime<chrono::Utc>, String>>;

/// Consumes the exchange on a queue of this process's own (exclusive, gone
/// with the connection) into `hub`, reconnecting after a failure, until
/// `stop`.
pub fn spawn_consumer(
    url: String,
    exchange: String,
    hub: Arc<Hub>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match consume(&url, &exchange, &hub, &mut stop).await {
                Ok(()) => break,
                Err(error) => {
                    hub.set_consuming(false);
                    tracing::warn!(%error, "event consumer lost the broker; reconnecting");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = crate::server::stopped(&mut stop) => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        hub.set_consuming(false);
    })
}

async fn consume(
    url: &str,
    exchange: &str,
    hub: &Hub,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let setup = tokio::time::timeout(SETUP_TIMEOUT, subscribe(url, exchange));
    let (connection, mut consumer, queue) = setup
        .await
        .map_err(|_| format!("no consumer within {} s", SETUP_TIMEOUT.as_secs()))??;
    hub.set_consuming(true);
    tracing::info!(%queue, "consuming events from the broker");
    loop {
        tokio::select! {
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    let id = delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|id| id.to_string())
                        .unwrap_or_default();
                    hub.deliver(&id, &delivery.data);
                }
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("the broker ended the consumer".to_owned()),
            },
            () = crate::server::stopped(stop) => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    connection.close(200, "shutting down".into()),
                )
                .await;
                return Ok(());
            }
        }
    }
}

/// A connection, a consumer of a new exclusive queue bound to the exchange's
/// routing keys, and the queue's name.
async fn subscribe(
    url: &str,
    exchange: &str,
) -> Result<(Connection, lapin::Consumer, String), String> {
    let (connection, channel) = open_exchange(url, exchange)
        .await
        .map_err(|e| e.to_string())?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(QUEUE_MAX_LENGTH),
    );
    let (consumer, queue) = exclusive_consumer(
        &channel,
        exchange,
        &["trade.*", "book.*", "order.*"],
        arguments,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((connection, consumer, queue))
}

/// A consumer (no acknowledgements) of a new queue of this connection's own
/// (exclusive, deleted with it), declared with `arguments` and bound to
/// `exchange` with each of `keys`; and the queue's name. Also for consumers
/// of their own, such as the benchmark's.
pub async fn exclusive_consumer(
    channel: &Channel,
    exchange: &str,
    keys: &[&str],
    arguments: FieldTable,
) -> Result<(lapin::Consumer, String), lapin::Error> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    for key in keys {
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((consumer, queue.name().to_string()))
}
