//! The terminal UI of `switchboard chat` (ratatui): messages, the member list with who is
//! typing, an input line, and a status bar with the connection state and the reconnect
//! countdown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use futures_util::StreamExt;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph};
use switchboard::ConnectionState;
use tokio::sync::mpsc;

use crate::chat::{ChatEvent, ChatSession, MAX_PENDING, Said, member_name};
use crate::commands::Failure;
use crate::settings::Protocol;

/// How long a typing flag lasts without news, and how long we wait before saying we stopped.
const TYPING_TTL: Duration = Duration::from_secs(5);
const TYPING_IDLE: Duration = Duration::from_secs(2);
/// Messages kept on screen.
const HISTORY: usize = 500;

struct Ui {
    lines: Vec<Line<'static>>,
    input: String,
    typing: HashMap<String, Instant>,
    state: ConnectionState,
    state_at: Instant,
    status_note: String,
    i_am_typing: Option<Instant>,
}

impl Ui {
    fn new(status_note: String) -> Self {
        Self {
            lines: Vec::new(),
            input: String::new(),
            typing: HashMap::new(),
            state: ConnectionState::Connecting,
            state_at: Instant::now(),
            status_note,
            i_am_typing: None,
        }
    }

    fn push(&mut self, line: Line<'static>) {
        self.lines.push(line);
        if self.lines.len() > HISTORY {
            self.lines.remove(0);
        }
    }

    fn info(&mut self, text: String) {
        self.push(Line::from(Span::styled(text, Style::default().fg(Color::DarkGray))));
    }
}

/// Run the TUI until `/quit`, Esc or Ctrl-C.
pub async fn run(
    mut session: ChatSession,
    mut events: mpsc::UnboundedReceiver<ChatEvent>,
    embedded: Option<std::net::SocketAddr>,
) -> Result<(Protocol, String, Option<String>), Failure> {
    let mut terminal = ratatui::init();
    let status_note = embedded.map(|addr| format!("embedded server on {addr}")).unwrap_or_default();
    let mut ui = Ui::new(status_note);
    ui.info(format!("joined {} — type a message, /who, /room NAME, /quit", session.room()));
    let mut keys = EventStream::new();
    let terminated = crate::chat::terminated();
    tokio::pin!(terminated);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let result = loop {
        if let Err(e) = terminal.draw(|frame| draw(frame, &ui, &session)) {
            break Err(Failure(format!("terminal: {e}"), 1));
        }
        tokio::select! {
            () = &mut terminated => break Ok(()), // SIGTERM: leave as /quit does
            key = keys.next() => {
                let Some(Ok(TermEvent::Key(key))) = key else { continue };
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                match key.code {
                    KeyCode::Esc => break Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => break Ok(()),
                    KeyCode::Enter => {
                        let line = std::mem::take(&mut ui.input);
                        match handle_line(&mut session, &mut ui, line.trim()).await {
                            Ok(true) => break Ok(()),
                            Ok(false) => {}
                            Err(Failure(message, _)) => ui.info(format!("! {message}")),
                        }
                    }
                    KeyCode::Backspace => {
                        ui.input.pop();
                    }
                    KeyCode::Char(c) => {
                        ui.input.push(c);
                        if ui.i_am_typing.is_none() {
                            let _ = session.typing(true).await;
                        }
                        ui.i_am_typing = Some(Instant::now());
                    }
                    _ => {}
                }
            }
            Some(event) = events.recv() => {
                let connected = matches!(event, ChatEvent::State(ConnectionState::Connected { .. }));
                on_event(&mut ui, event);
                if connected {
                    flush_pending(&mut session, &mut ui).await;
                }
            }
            _ = tick.tick() => {
                flush_pending(&mut session, &mut ui).await;
                ui.typing.retain(|_, since| since.elapsed() < TYPING_TTL);
                if ui.i_am_typing.is_some_and(|at| at.elapsed() > TYPING_IDLE) {
                    ui.i_am_typing = None;
                    let _ = session.typing(false).await;
                }
            }
        }
    };
    ratatui::restore();
    // Never dropped silently: what could not be sent is printed once the terminal is back.
    for text in session.pending() {
        eprintln!("switchboard chat: still offline, NOT SENT: {text}");
    }
    let whereabouts = session.whereabouts();
    session.quit().await;
    result.map(|()| whereabouts)
}

/// Send what was kept while offline, and say so.
async fn flush_pending(session: &mut ChatSession, ui: &mut Ui) {
    if session.pending().next().is_none() {
        return;
    }
    let sent = session.flush_pending().await;
    if sent > 0 {
        ui.info(format!("* sent {sent} message(s) kept while offline"));
    }
}

/// Returns true to quit.
async fn handle_line(session: &mut ChatSession, ui: &mut Ui, line: &str) -> Result<bool, Failure> {
    if line.is_empty() {
        return Ok(false);
    }
    match line.split_once(' ').map_or((line, ""), |(c, r)| (c, r.trim())) {
        ("/quit", _) => return Ok(true),
        ("/who", _) => {
            let names: Vec<String> = session.members().iter().map(member_name).collect();
            ui.info(format!("* members: {}", names.join(", ")));
        }
        ("/room", room) if !room.is_empty() => {
            let left = session.room().to_owned();
            let unsent = session.switch_room(room).await?;
            for text in unsent {
                ui.info(format!("! left {left} offline, not sent: {text}"));
            }
            ui.typing.clear();
            ui.info(format!("* now in room {room}"));
        }
        _ => {
            let said = session.say(line).await;
            if ui.i_am_typing.take().is_some() {
                let _ = session.typing(false).await;
            }
            match said {
                Said::Sent => ui.push(Line::from(vec![
                    Span::styled("me: ", Style::default().add_modifier(Modifier::BOLD)),
                    Span::raw(line.to_owned()),
                ])),
                Said::Pending(n) => ui.push(Line::from(vec![
                    Span::styled("me (pending): ", Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
                    Span::raw(format!("{line}   [offline: sent on reconnect, {n} waiting]")),
                ])),
                Said::Refused => {
                    // Kept in the input line: nothing typed is thrown away.
                    ui.input = line.to_owned();
                    ui.info(format!(
                        "! offline with {MAX_PENDING} messages waiting: not sent; your text stays in the input line"
                    ));
                }
            }
        }
    }
    Ok(false)
}

fn on_event(ui: &mut Ui, event: ChatEvent) {
    match event {
        ChatEvent::Message { user_id, name, text } => {
            // Their message is what they were typing.
            ui.typing.remove(&user_id);
            ui.push(Line::from(vec![
                Span::styled(format!("{name}: "), Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD)),
                Span::raw(text),
            ]));
        }
        ChatEvent::Typing { user_id, typing, .. } => {
            if typing {
                ui.typing.insert(user_id, Instant::now());
            } else {
                ui.typing.remove(&user_id);
            }
        }
        ChatEvent::Joined(member) => ui.info(format!("* {} joined", member_name(&member))),
        ChatEvent::Left(member) => {
            ui.typing.remove(&member.id);
            ui.info(format!("* {} left", member_name(&member)));
        }
        ChatEvent::State(state) => {
            ui.state = state;
            ui.state_at = Instant::now();
        }
        ChatEvent::Notice(text) => ui.info(format!("* {text}")),
    }
}

fn draw(frame: &mut ratatui::Frame<'_>, ui: &Ui, session: &ChatSession) {
    let [body, input, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(3), Constraint::Length(1)]).areas(frame.area());
    let [messages, members] = Layout::horizontal([Constraint::Min(20), Constraint::Length(28)]).areas(body);

    let height = messages.height.saturating_sub(2) as usize;
    let start = ui.lines.len().saturating_sub(height);
    let title = format!(" room {} ", session.room());
    frame.render_widget(
        Paragraph::new(ui.lines[start..].to_vec()).block(Block::default().borders(Borders::ALL).title(title)),
        messages,
    );

    let me = session.my_id();
    let items: Vec<ListItem<'_>> = session
        .members()
        .iter()
        .map(|m| {
            let mut text = member_name(m);
            if me.as_deref() == Some(m.id.as_str()) {
                text.push_str(" (you)");
            }
            if ui.typing.contains_key(&m.id) {
                text.push_str(" ✎ typing");
            }
            ListItem::new(text)
        })
        .collect();
    let count = items.len();
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(format!(" members ({count}) "))),
        members,
    );

    frame.render_widget(
        Paragraph::new(ui.input.as_str()).block(Block::default().borders(Borders::ALL).title(" message ")),
        input,
    );

    let state = match &ui.state {
        ConnectionState::Connected { .. } => "connected".to_owned(),
        ConnectionState::Unavailable { retry_in, reason } => {
            let left = retry_in.saturating_sub(ui.state_at.elapsed());
            format!("reconnecting in {:.0}s ({reason})", left.as_secs_f64().ceil())
        }
        other => other.name().to_owned(),
    };
    let line = if ui.status_note.is_empty() { state } else { format!("{state} · {}", ui.status_note) };
    frame.render_widget(Paragraph::new(line).style(Style::default().fg(Color::Black).bg(Color::Gray)), status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_message_clears_its_typing_mark() {
        let mut ui = Ui::new(String::new());
        on_event(&mut ui, ChatEvent::Typing { user_id: "ada-1".into(), name: "ada".into(), typing: true });
        on_event(&mut ui, ChatEvent::Typing { user_id: "bob-2".into(), name: "bob".into(), typing: true });
        on_event(&mut ui, ChatEvent::Message { user_id: "ada-1".into(), name: "ada".into(), text: "hi".into() });
        assert!(!ui.typing.contains_key("ada-1"), "ada's message is what she was typing");
        assert!(ui.typing.contains_key("bob-2"), "bob is still typing");
        on_event(&mut ui, ChatEvent::Notice("this chat hosts it now".into()));
        assert_eq!(ui.lines.len(), 2);
    }
}
