//! Headless Chromium for the page tests: Debian's `chromedriver` on a free loopback port,
//! one WebDriver session through fantoccini, and a screenshot of every page saved under
//! `target/screenshots/` as the test's artifact.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use fantoccini::Locator;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::{Process, TempDir, free_port, integration_required, wait_for_port};

/// Where Debian's packages put the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session, closed with its driver when dropped.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    screenshots: PathBuf,
    driver: Process,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's process group: chromedriver and every Chromium process it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session whose screenshots go to
    /// `target/screenshots/{label}/`. `None` (with the reason on stderr) when Chromium is not
    /// installed; under `OSTRACON_REQUIRE_INTEGRATION=1` that is a failure instead.
    pub async fn start(label: &str) -> Option<Self> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(binary).exists() {
                let why = format!("{binary} is missing (apt-get install chromium chromium-driver)");
                assert!(!integration_required(), "browser tests cannot run: {why}");
                eprintln!("skipping browser test: {why}");
                return None;
            }
        }
        let profile = TempDir::new(&format!("chromium-{label}"));
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        // Its own process group, which the Chromium it starts joins: dropping the browser
        // (a test that panicked never closes it) ends them all, not only the driver.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.arg(format!("--port={port}"));
        let driver = Process::spawn("chromedriver", command, &profile.path().join("chromedriver.log"))
            .expect("chromedriver starts");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(wait_for_port(address, Duration::from_secs(20)), "chromedriver did not listen on {address}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--no-default-browser-check",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{address}"))
            .await
            .expect("a WebDriver session in headless Chromium");
        let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots").join(label);
        std::fs::create_dir_all(&screenshots).expect("the screenshot directory");
        Some(Self { client, screenshots, driver, _profile: profile })
    }

    /// Saves a PNG of the current page as `{name}.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// Ends the session, so Chromium exits before its driver is killed.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Goes to `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Types `text` into the field named `name` (replacing what it holds).
    pub async fn fill(&self, name: &str, text: &str) {
        let field = self.client.find(Locator::Css(&format!("[name=\"{name}\"]"))).await.expect("the field");
        field.clear().await.expect("the field clears");
        field.send_keys(text).await.expect("typing into the field");
    }

    /// Clicks the submit button of the form whose `action` is `action`, and waits for the
    /// next page.
    pub async fn submit(&self, action: &str) {
        let button = self
            .client
            .find(Locator::Css(&format!("form[action=\"{action}\"] button[type=submit]")))
            .await
            .unwrap_or_else(|e| panic!("no submit button for {action}: {e}"));
        button.click().await.expect("the click");
    }

    /// Waits until the page's `<main>` shows `needle`, and returns its text.
    pub async fn wait_for_text(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let text = match self.client.find(Locator::Css("main")).await {
                Ok(main) => main.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            assert!(std::time::Instant::now() < deadline, "{needle:?} never showed at {url}; the page says:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The attribute `name` of the first element `css` finds.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        element.attr(name).await.expect("the attribute")
    }

    /// The visible text of the page's `<main>`.
    pub async fn main_text(&self) -> String {
        let main = self.client.find(Locator::Css("main")).await.expect("a <main> element");
        main.text().await.expect("the text of <main>")
    }
}
