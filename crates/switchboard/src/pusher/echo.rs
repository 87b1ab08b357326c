//! Laravel Echo's vocabulary over the client: `channel` / `private` / `encrypted_private` /
//! `join` add the prefixes, `listen` applies Echo's event namespace, `whisper` and
//! `listen_for_whisper` are client events, `here` / `joining` / `leaving` follow presence.
//!
//! Event names follow `laravel/echo` `src/util/event-formatter.ts`: a leading `.` or `\`
//! means the name is literal; otherwise it is `namespace + '.' + event` with every `.`
//! turned into `\`, so `listen("OrderShipped")` binds `App\Events\OrderShipped`.
//!
//! ```
//! use switchboard::pusher::echo::format_event_name;
//! assert_eq!(format_event_name("App.Events", "OrderShipped"), r"App\Events\OrderShipped");
//! ```

use serde::Serialize;

use crate::error::Result;
use crate::event::{Event, HandlerId};
use crate::pusher::auth::PresenceUser;
use crate::pusher::channel::Channel;
use crate::pusher::client::Client;
use crate::pusher::presence::Member;

/// Echo's default namespace.
///
/// ```
/// use switchboard::pusher::echo::{DEFAULT_NAMESPACE, format_event_name};
/// assert_eq!(format_event_name(DEFAULT_NAMESPACE, "UserJoined"), r"App\Events\UserJoined");
/// ```
pub const DEFAULT_NAMESPACE: &str = "App.Events";

/// The full event name Echo binds for `event` in `namespace`.
///
/// ```
/// use switchboard::pusher::echo::format_event_name;
/// assert_eq!(format_event_name("App.Events", "OrderShipped"), r"App\Events\OrderShipped");
/// assert_eq!(format_event_name("App.Events", "Orders.Shipped"), r"App\Events\Orders\Shipped");
/// assert_eq!(format_event_name("App.Events", ".order.shipped"), "order.shipped");
/// assert_eq!(format_event_name("App.Events", r"\App\Custom"), r"App\Custom");
/// ```
pub fn format_event_name(namespace: &str, event: &str) -> String {
    if let Some(literal) = event.strip_prefix('.').or_else(|| event.strip_prefix('\\')) {
        return literal.to_owned();
    }
    let full = if namespace.is_empty() { event.to_owned() } else { format!("{namespace}.{event}") };
    full.replace('.', "\\")
}

/// Echo-style access to a [`Client`].
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let echo = switchboard::pusher::echo::Echo::new(client);
/// let orders = echo.private("orders.1").await?;          // private-orders.1
/// orders.listen("OrderShipped", |e| println!("{:?}", e.data())); // App\Events\OrderShipped
/// orders.whisper("typing", &serde_json::json!({"name": "Ada"})).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Echo {
    client: Client,
    namespace: String,
}

impl Echo {
    /// Echo over `client` with the namespace `App.Events`.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let news = echo.channel("news").await?; // public: no prefix
    /// # Ok(()) }
    /// ```
    pub fn new(client: Client) -> Self {
        Self { client, namespace: DEFAULT_NAMESPACE.to_owned() }
    }

    /// Use another namespace (`""` for none).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client).namespace("Domain.Events");
    /// let orders = echo.private("orders.1").await?;
    /// orders.listen("Shipped", |_| {}); // binds Domain\Events\Shipped
    /// # Ok(()) }
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// A public channel.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let news = echo.channel("news").await?;
    /// assert_eq!(news.channel().name(), "news");
    /// # Ok(()) }
    /// ```
    pub async fn channel(&self, name: &str) -> Result<EchoChannel> {
        Ok(self.wrap(self.client.subscribe(name).await?))
    }

    /// `private-{name}`.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let orders = echo.private("orders.1").await?;
    /// assert_eq!(orders.channel().name(), "private-orders.1");
    /// # Ok(()) }
    /// ```
    pub async fn private(&self, name: &str) -> Result<EchoChannel> {
        Ok(self.wrap(self.client.subscribe(&format!("private-{name}")).await?))
    }

    /// `private-encrypted-{name}`.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let vault = echo.encrypted_private("vault").await?;
    /// assert_eq!(vault.channel().name(), "private-encrypted-vault");
    /// # Ok(()) }
    /// ```
    pub async fn encrypted_private(&self, name: &str) -> Result<EchoChannel> {
        Ok(self.wrap(self.client.subscribe(&format!("private-encrypted-{name}")).await?))
    }

    /// `presence-{name}`, authorized by the client's authorizer (Laravel returns the user).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let room = echo.join("chat.1").await?; // presence-chat.1, the endpoint says who we are
    /// room.here(|members| println!("{} here", members.len()));
    /// # Ok(()) }
    /// ```
    pub async fn join(&self, name: &str) -> Result<EchoChannel> {
        Ok(self.wrap(self.client.subscribe(&format!("presence-{name}")).await?))
    }

    /// `presence-{name}` as `user` (when signing locally).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = echo.join_as("chat.1", me).await?;
    /// # let _ = room;
    /// # Ok(()) }
    /// ```
    pub async fn join_as(&self, name: &str, user: PresenceUser) -> Result<EchoChannel> {
        Ok(self.wrap(self.client.subscribe_presence(&format!("presence-{name}"), user).await?))
    }

    /// Leave `name` in every form Echo knows: `name`, `private-`, `private-encrypted-`,
    /// `presence-`.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// echo.join("chat.1").await?;
    /// echo.leave("chat.1").await; // leaves presence-chat.1 (and any other form of chat.1)
    /// # Ok(()) }
    /// ```
    pub async fn leave(&self, name: &str) {
        for prefix in ["", "private-", "private-encrypted-", "presence-"] {
            self.client.unsubscribe(&format!("{prefix}{name}")).await;
        }
    }

    /// The socket id, for Laravel's `X-Socket-ID` header (`toOthers()`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// // Send it as X-Socket-ID so that Laravel's broadcast(...)->toOthers() skips this socket.
    /// let header = echo.socket_id().map(|id| ("X-Socket-ID", id));
    /// # let _ = header;
    /// # Ok(()) }
    /// ```
    pub fn socket_id(&self) -> Option<String> {
        self.client.socket_id()
    }

    fn wrap(&self, channel: Channel) -> EchoChannel {
        EchoChannel { channel, namespace: self.namespace.clone() }
    }
}

/// A channel with Echo's methods.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let echo = switchboard::Echo::new(client);
/// let room = echo.join("chat.1").await?;
/// room.joining(|m| println!("{} joined", m.id));
/// room.leaving(|m| println!("{} left", m.id));
/// room.listen_for_whisper("typing", |e| println!("{:?} is typing", e.user_id()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EchoChannel {
    channel: Channel,
    namespace: String,
}

impl EchoChannel {
    /// The underlying channel.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let orders = echo.private("orders.1").await?;
    /// let mut stream = orders.channel().events(); // everything, as a stream
    /// # let _ = stream.recv();
    /// # Ok(()) }
    /// ```
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Listen for a Laravel event (namespace applied unless the name starts with `.`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let orders = echo.private("orders.1").await?;
    /// orders.listen("OrderShipped", |e| println!("{:?}", e.data()));   // App\Events\OrderShipped
    /// orders.listen(".order.shipped", |e| println!("{:?}", e.data())); // order.shipped, as it is
    /// # Ok(()) }
    /// ```
    pub fn listen(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.channel.bind(&format_event_name(&self.namespace, event), handler)
    }

    /// Stop listening for `event` (every handler of it).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let orders = echo.private("orders.1").await?;
    /// orders.listen("OrderShipped", |_| {});
    /// assert_eq!(orders.stop_listening("OrderShipped"), 1);
    /// # Ok(()) }
    /// ```
    pub fn stop_listening(&self, event: &str) -> usize {
        self.channel.unbind(&format_event_name(&self.namespace, event), None)
    }

    /// Listen for Laravel notifications (`BroadcastNotificationCreated`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let me = echo.private("App.Models.User.42").await?;
    /// me.notification(|n| println!("notification: {:?}", n.data()));
    /// # Ok(()) }
    /// ```
    pub fn notification(&self, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.listen(".Illuminate\\Notifications\\Events\\BroadcastNotificationCreated", handler)
    }

    /// Send a whisper (`client-{event}`) to the other members.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let room = echo.join("chat.1").await?;
    /// room.whisper("typing", &serde_json::json!({"name": "Ada"})).await?; // client-typing
    /// # Ok(()) }
    /// ```
    pub async fn whisper(&self, event: &str, data: &impl Serialize) -> Result<()> {
        self.channel.trigger(event, data).await
    }

    /// Listen for whispers of `event`.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let room = echo.join("chat.1").await?;
    /// room.listen_for_whisper("typing", |e| println!("{:?}", e.data()));
    /// # Ok(()) }
    /// ```
    pub fn listen_for_whisper(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.channel.bind(&format!("client-{event}"), handler)
    }

    /// The current members, now (Echo calls `here` on subscription; the channel is already
    /// subscribed here) and again after each resubscription.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let room = echo.join("chat.1").await?;
    /// room.here(|members| {
    ///     for m in members {
    ///         println!("{} {}", m.id, m.info);
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn here(&self, handler: impl Fn(&[Member]) + Send + Sync + 'static) -> HandlerId {
        let members: Vec<Member> = self.channel.members().iter().collect();
        handler(&members);
        let channel = self.channel.clone();
        self.channel.bind("pusher:subscription_succeeded", move |_| {
            let members: Vec<Member> = channel.members().iter().collect();
            handler(&members);
        })
    }

    /// A member joined: its id and info.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let room = echo.join("chat.1").await?;
    /// room.joining(|m| println!("{} joined", m.id));
    /// # Ok(()) }
    /// ```
    pub fn joining(&self, handler: impl Fn(&Member) + Send + Sync + 'static) -> HandlerId {
        self.channel.bind("pusher:member_added", move |event| {
            if let Some(member) = member_of(event) {
                handler(&member);
            }
        })
    }

    /// A member left.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let echo = switchboard::Echo::new(client);
    /// let room = echo.join("chat.1").await?;
    /// room.leaving(|m| println!("{} left", m.id));
    /// # Ok(()) }
    /// ```
    pub fn leaving(&self, handler: impl Fn(&Member) + Send + Sync + 'static) -> HandlerId {
        self.channel.bind("pusher:member_removed", move |event| {
            if let Some(member) = member_of(event) {
                handler(&member);
            }
        })
    }
}

fn member_of(event: &Event) -> Option<Member> {
    let data: serde_json::Value = event.json().ok()?;
    let id = crate::pusher::presence::id_string(&data["user_id"])?;
    Some(Member { id, info: data.get("user_info").cloned().unwrap_or(serde_json::Value::Null) })
}
