//! An inventory-sync listener: keeps a local stock table from Laravel's `StockUpdated`
//! broadcasts on the `inventory` channel (Echo naming), and reloads the full table from
//! `INVENTORY_SNAPSHOT_URL` whenever a gap was possible (after every reconnect).
//!
//! ```sh
//! INVENTORY_SNAPSHOT_URL=http://127.0.0.1:8000/api/stock REVERB_APP_KEY=switchboard-key \
//!   REVERB_HOST=127.0.0.1 REVERB_PORT=8080 REVERB_SCHEME=http cargo run -p switchboard --example inventory_sync
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchboard::{Client, ClientOptions, Echo, GAP_EVENT};

type Stock = Arc<Mutex<HashMap<String, i64>>>;

async fn reload(stock: &Stock) {
    let Ok(url) = std::env::var("INVENTORY_SNAPSHOT_URL") else {
        eprintln!("a gap was possible; set INVENTORY_SNAPSHOT_URL to reload the full table");
        return;
    };
    let snapshot: Result<HashMap<String, i64>, String> = async {
        let response = reqwest::get(&url).await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }
    .await;
    match snapshot {
        Ok(table) => {
            eprintln!("reloaded {} items from {url}", table.len());
            *stock.lock().unwrap_or_else(|p| p.into_inner()) = table;
        }
        Err(e) => eprintln!("reload from {url} failed: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), switchboard::Error> {
    let client = Client::connect(ClientOptions::from_env()?.build()?).await?;
    let stock: Stock = Arc::default();
    reload(&stock).await;
    let inventory = Echo::new(client.clone()).channel("inventory").await?;
    let table = stock.clone();
    inventory.listen("StockUpdated", move |event| {
        let update: serde_json::Value = event.json().unwrap_or_default();
        if let (Some(sku), Some(quantity)) = (update["sku"].as_str(), update["quantity"].as_i64()) {
            table.lock().unwrap_or_else(|p| p.into_inner()).insert(sku.to_owned(), quantity);
            println!("{sku} = {quantity}");
        }
    });
    let mut gaps = inventory.channel().events_named(GAP_EVENT);
    while gaps.recv().await.is_some() {
        reload(&stock).await;
    }
    Ok(())
}
