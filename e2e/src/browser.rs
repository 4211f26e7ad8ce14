//! Tests in a real browser: Debian's headless Chromium, driven through chromedriver with
//! [fantoccini].
//!
//! ```no_run
//! # async fn example() -> e2e::Result<()> {
//! use e2e::browser::{Browser, screenshot, screenshot_dir};
//!
//! let browser = Browser::shared().await?;
//! let session = browser.new_session().await?;
//! session.open("http://127.0.0.1:8080/signup").await?;
//! session.fill("Company name", "Acme").await?;
//! session.click_button("Sign up").await?;
//! session.wait_for_text("h1", "Welcome", std::time::Duration::from_secs(10)).await?;
//! screenshot(&session, &screenshot_dir("signup")?, "welcome").await?;
//! session.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! One chromedriver serves a whole test process ([`Browser::shared`]); each [`Session`] is its
//! own Chromium with a fresh, empty profile. Close sessions with [`Session::close`]; a session
//! dropped without it (a failed assertion) is ended by its destructor, so no browser outlives the
//! test that opened it.
//!
//! Chromium is started the way this closed network needs: without the background-networking
//! flags it tries to reach Google's services at every start, and a tool's own browser download
//! (`npx playwright install`) cannot work here at all, which is why the browser is Debian's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::error::{Error, IoContext, Result};
use crate::install::ensure_debian_packages;
use crate::process::{Spec, Supervised, WorkDir, free_port};

/// Debian's Chromium launcher.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver, of the same version as [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The Debian packages providing them.
pub const PACKAGES: &[&str] = &["chromium", "chromium-driver"];
/// Overrides where [`screenshot_dir`] puts screenshots.
pub const SCREENSHOTS_VAR: &str = "TENANTRY_SCREENSHOTS";
/// How long [`Session::fill`] and [`Session::click_button`] wait for their element by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Times [`Session::fill`] clears and types before it gives up on a field a script keeps changing.
const FILL_ATTEMPTS: usize = 3;

/// Flags every Chromium runs with.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    // As root (tests here run as root) Chromium refuses to start with its sandbox.
    "--no-sandbox",
    "--disable-gpu",
    // This machine's network is closed: without these, Chromium reaches for Google's services
    // (QUIC probes, component updates, sync, field trials) at every start and floods the log
    // with refused connections.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Not `--disable-crashpad-for-testing`, although the crash handler leaves the process tree:
    // without it this Chromium's network service crashes at start ("FD ownership violation")
    // and every page load hangs. The handler exits by itself when its browser has gone.
];

/// How chromedriver is run: under a shell that, when it gets `SIGTERM` (from [`Supervised`] or
/// the work directory's reaper) or sees chromedriver die, stops every process descended from it —
/// chromedriver, each Chromium it started and their helpers — since chromedriver does not stop
/// its browsers when it is signalled. It signals them all, waits up to five seconds, then kills
/// what is left.
///
/// Everything stays in the test process's process group (no `setsid`): nextest and `timeout`
/// signal that whole group, reaper included, when they stop a test, and the browsers must go
/// with it. `/proc/<pid>/stat` is read with the shell's own `read`, so the scan starts no
/// processes.
const SUPERVISOR_SCRIPT: &str = r#"
descendants() {
  table=""
  for stat in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null < "$stat" || continue
    fields=${line##*) }
    ppid=${fields#* }
    table="$table ${line%% *}:${ppid%% *}"
  done
  found=" $$ "
  grew=1
  while [ $grew = 1 ]; do
    grew=0
    for entry in $table; do
      case "$found" in
        *" ${entry#*:} "*) case "$found" in *" ${entry%:*} "*) ;; *) found="$found${entry%:*} "; grew=1 ;; esac ;;
      esac
    done
  done
  echo "${found# $$ }"
}
running() {
  for pid in "$@"; do
    read -r line 2>/dev/null < "/proc/$pid/stat" || continue
    fields=${line##*) }
    [ "${fields%% *}" != Z ] && return 0
  done
  return 1
}
stop_all() {
  trap '' TERM INT HUP
  pids=$(descendants)
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null
  i=0
  while [ $i -lt 50 ] && running $pids; do sleep 0.1; i=$((i+1)); done
  running $pids && kill -KILL $pids 2>/dev/null
  return 0
}
trap 'stop_all; wait; exit 0' TERM INT HUP
"$@" &
wait $!
status=$?
stop_all
exit $status
"#;

/// The size of the browser's viewport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// Emulate a phone: touch, the page's `<meta name="viewport">` honoured, as on a real phone.
    pub mobile: bool,
}

impl Viewport {
    /// A laptop: the page gets 1280×900 CSS pixels.
    pub const DESKTOP: Viewport = Viewport { width: 1280, height: 900, mobile: false };
    /// A phone-sized screen (an iPhone 12–15's CSS pixels).
    pub const PHONE: Viewport = Viewport { width: 390, height: 844, mobile: true };
}

/// A chromedriver owned by this process. Dropping the last handle (the browser and all its
/// sessions) stops it, and with it every browser it started.
pub struct Browser {
    driver: Arc<Driver>,
}

struct Driver {
    // Declared before the work directory so the process stops before its directory goes.
    process: Supervised,
    port: u16,
    url: String,
    workdir: Arc<WorkDir>,
    sessions: AtomicU64,
}

impl Driver {
    fn log_tail(&self) -> String {
        format!("(full log: {})\n{}", self.process.log_path().display(), self.process.log_tail())
    }
}

impl Browser {
    /// The chromedriver shared by this test process, started on first use. Every test of a
    /// process gets its own sessions from it. A static is never dropped, so it is the work
    /// directory's reaper that stops chromedriver, and with it the browsers, when the process
    /// ends. A failed start is not remembered: the next caller tries again and gets its own error.
    pub async fn shared() -> Result<&'static Browser> {
        static SHARED: OnceCell<Browser> = OnceCell::const_new();
        SHARED.get_or_try_init(Browser::start).await
    }

    /// Starts a chromedriver of its own (installing Chromium first if it is missing) and waits
    /// until it answers.
    pub async fn start() -> Result<Browser> {
        tokio::task::spawn_blocking(|| ensure_debian_packages(PACKAGES)).await.expect("installer panicked")?;
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(program).exists() {
                return Err(Error::Prerequisite(format!(
                    "{program} is missing although {} are installed",
                    PACKAGES.join(" and ")
                )));
            }
        }
        let workdir = WorkDir::create("browser")?;
        let port = free_port()?;
        let spec = Spec::new("chromedriver", "sh").args([
            "-c",
            SUPERVISOR_SCRIPT,
            "tenantry-chromedriver",
            CHROMEDRIVER,
            &format!("--port={port}"),
        ]);
        let process = Supervised::spawn(&workdir, spec)?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let status_url = format!("{url}/status");
        process
            .wait_ready("chromedriver", Duration::from_secs(30), || {
                let request = http.get(&status_url);
                async move {
                    let status: serde_json::Value =
                        request.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
                    match status.pointer("/value/ready") {
                        Some(serde_json::Value::Bool(true)) => Ok(()),
                        _ => Err(format!("/status answered {status}")),
                    }
                }
            })
            .await?;
        tracing::debug!(%url, "chromedriver ready");
        Ok(Browser { driver: Arc::new(Driver { process, port, url, workdir, sessions: AtomicU64::new(0) }) })
    }

    /// Where chromedriver listens (`http://127.0.0.1:<port>`).
    pub fn webdriver_url(&self) -> &str {
        &self.driver.url
    }

    /// chromedriver's log, which also holds what Chromium printed.
    pub fn log_path(&self) -> &Path {
        self.driver.process.log_path()
    }

    /// A new browser whose page gets 1280×900 CSS pixels.
    pub async fn new_session(&self) -> Result<Session> {
        self.new_session_with(Viewport::DESKTOP).await
    }

    /// A new browser emulating a 390×844 phone screen.
    pub async fn new_phone_session(&self) -> Result<Session> {
        self.new_session_with(Viewport::PHONE).await
    }

    /// A new browser (its own Chromium, with a new empty profile) with the given viewport.
    pub async fn new_session_with(&self, viewport: Viewport) -> Result<Session> {
        let driver = &self.driver;
        driver.process.check_alive()?;
        let number = driver.sessions.fetch_add(1, Ordering::Relaxed);
        let profile = driver.workdir.join(format!("profile-{number}"));
        // Chromium must find an empty directory: a reused profile carries state between tests.
        if profile.exists() {
            std::fs::remove_dir_all(&profile).context(|| format!("emptying {}", profile.display()))?;
        }
        std::fs::create_dir_all(&profile).context(|| format!("creating {}", profile.display()))?;

        let capabilities = capabilities(&profile, viewport);
        let started = Instant::now();
        let client = ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&driver.url).await;
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(Error::CommandFailed {
                    command: format!("WebDriver new session ({CHROMIUM} {})", CHROMIUM_FLAGS.join(" ")),
                    status: e.to_string(),
                    tail: driver.log_tail(),
                });
            }
        };
        // Held from here on so that an error below still ends the browser (by `Drop`).
        let mut session = Session {
            client,
            id: String::new(),
            profile,
            viewport,
            timeout: DEFAULT_TIMEOUT,
            closed: false,
            driver: driver.clone(),
        };
        session.id = match session.client.session_id().await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err(session.command_failed("new session", "chromedriver returned no session id"));
            }
            Err(e) => return Err(session.command_failed("new session", e)),
        };
        if !viewport.mobile {
            session.fit_viewport().await?;
        }
        tracing::debug!(session = %session.id, ?viewport, took = ?started.elapsed(), "browser session started");
        Ok(session)
    }
}

fn capabilities(profile: &Path, viewport: Viewport) -> Capabilities {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| flag.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!("--window-size={},{}", viewport.width, viewport.height));
    let mut chrome_options = json!({ "binary": CHROMIUM, "args": args });
    if viewport.mobile {
        // The window size alone would give a narrow desktop browser; device metrics make the
        // page lay out as on a phone (touch, `<meta name="viewport">`), at 1 device pixel per
        // CSS pixel so screenshots keep the viewport's size.
        chrome_options["mobileEmulation"] = json!({
            "deviceMetrics": {
                "width": viewport.width,
                "height": viewport.height,
                "pixelRatio": 1.0,
                "touch": true,
                "mobile": true,
            }
        });
    }
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "goog:chromeOptions": chrome_options,
    });
    match capabilities {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// One browser (its own Chromium and profile). Dereferences to the [`fantoccini::Client`] for
/// everything the helpers here do not cover.
///
/// End it with [`Session::close`]. Dropped without it (a test failing half-way), it ends the
/// WebDriver session synchronously, which stops its Chromium, and removes the profile.
pub struct Session {
    client: Client,
    id: String,
    profile: PathBuf,
    viewport: Viewport,
    timeout: Duration,
    closed: bool,
    driver: Arc<Driver>,
}

impl Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// The accessibility audit run by [`Session::accessibility_problems`].
const ACCESSIBILITY_AUDIT: &str = include_str!("accessibility.js");

impl Session {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The WebDriver session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    /// How long [`Session::fill`] and [`Session::click_button`] wait for their element.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Ends the session: Chromium quits and its profile is removed.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        let result = self.client.clone().close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        result.map_err(|e| self.command_failed("close the session", e))
    }

    /// Loads `url` and waits for it to finish loading.
    pub async fn open(&self, url: &str) -> Result<()> {
        self.client.goto(url).await.map_err(|e| self.command_failed(&format!("open {url}"), e))
    }

    /// The visible text of the page's body.
    pub async fn page_text(&self) -> Result<String> {
        let body = self.client.find(Locator::Css("body")).await.map_err(|e| self.command_failed("find <body>", e))?;
        body.text().await.map_err(|e| self.command_failed("read the text of <body>", e))
    }

    /// Waits up to `timeout` until an element matches the CSS selector `css`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let started = Instant::now();
        match self.client.wait().at_most(timeout).every(Duration::from_millis(100)).for_element(Locator::Css(css)).await
        {
            Ok(element) => Ok(element),
            Err(CmdError::WaitTimeout) => {
                Err(self.not_ready(format!("an element matching `{css}`"), started, "none found".into()).await)
            }
            Err(e) => Err(self.command_failed(&format!("find `{css}`"), e)),
        }
    }

    /// Waits up to `timeout` until an element matching `css` shows text containing `text`, and
    /// returns the first such element.
    pub async fn wait_for_text(&self, css: &str, text: &str, timeout: Duration) -> Result<Element> {
        let what = format!("an element matching `{css}` with text containing {text:?}");
        self.poll(&what, timeout, move || async move {
            let elements = self.client.find_all(Locator::Css(css)).await?;
            let mut seen = Vec::new();
            for element in elements {
                let shown = element.text().await?;
                if shown.contains(text) {
                    return Ok(Ok(element));
                }
                seen.push(shown);
            }
            Ok(Err(if seen.is_empty() { "no element matches".to_string() } else { format!("their texts: {seen:?}") }))
        })
        .await
    }

    /// Types `value` into a form control found by its label's text, its `name` or its
    /// `aria-label`, waiting for it to appear; the control is cleared first. A `<select>` gets the
    /// option whose text (else whose value) is `value`.
    ///
    /// A label matches when its whitespace-normalised text, or its first text node's, equals
    /// `field`, and either names the control with `for` or contains it. Checkboxes and radio
    /// buttons are not typed into: click them.
    pub async fn fill(&self, field: &str, value: &str) -> Result<()> {
        let literal = xpath_literal(field);
        let label = format!("label[normalize-space(.)={literal} or normalize-space(text())={literal}]");
        let xpath = format!(
            "//*[(self::input or self::select or self::textarea) and not(@type='hidden') and \
             (@name={literal} or @aria-label={literal} or @id=//{label}/@for or ancestor::{label})]"
        );
        let what = format!("a form field labelled or named {field:?}");
        let xpath = xpath.as_str();
        let element = self.poll(&what, self.timeout, move || self.first_displayed(xpath)).await?;
        let failed = |e: CmdError| self.command_failed(&format!("fill {field:?}"), e);
        let tag = element.tag_name().await.map_err(failed)?.to_ascii_lowercase();
        if tag == "select" {
            return match element.select_by_label(value).await {
                Err(e) if e.is_no_such_element() => element.select_by_value(value).await.map_err(failed),
                other => other.map_err(failed),
            };
        }
        let kind = element.attr("type").await.map_err(failed)?.unwrap_or_default().to_ascii_lowercase();
        if kind == "checkbox" || kind == "radio" {
            return Err(self.command_failed(
                &format!("fill {field:?}"),
                format!("it is a {kind}, which is clicked, not typed into"),
            ));
        }
        // A page script may write into the field between the clear and the typing (the signup
        // form's address suggestion, answered while the field is not yet focused): the keys are
        // then appended to its text. The field must end with exactly `value`.
        for _ in 0..FILL_ATTEMPTS {
            element.clear().await.map_err(failed)?;
            element.send_keys(value).await.map_err(failed)?;
            if element.prop("value").await.map_err(failed)?.as_deref() == Some(value) {
                return Ok(());
            }
        }
        Err(self.command_failed(
            &format!("fill {field:?}"),
            format!("the field does not keep {value:?}: a script of the page changes it"),
        ))
    }

    /// Clicks the button whose text (or, for `<input type=submit>`, value) is `text`, waiting for
    /// it to be displayed and enabled.
    pub async fn click_button(&self, text: &str) -> Result<()> {
        let literal = xpath_literal(text);
        let xpath = format!(
            "//button[normalize-space(.)={literal}] \
             | //input[(@type='submit' or @type='button' or @type='reset') and @value={literal}] \
             | //*[@role='button' and normalize-space(.)={literal}]"
        );
        let what = format!("an enabled button {text:?}");
        let xpath = xpath.as_str();
        let button = self
            .poll(&what, self.timeout, move || async move {
                match self.first_displayed(xpath).await? {
                    Ok(button) if button.is_enabled().await? => Ok(Ok(button)),
                    Ok(_) => Ok(Err("it is disabled".to_string())),
                    Err(why) => Ok(Err(why)),
                }
            })
            .await?;
        button.click().await.map_err(|e| self.command_failed(&format!("click {text:?}"), e))
    }

    /// What the accessibility audit (`accessibility.js`) finds wrong with the page as it is now:
    /// controls without a name, broken `aria-*` references, duplicate ids, skipped heading
    /// levels, positive `tabindex`, text below WCAG AA contrast. One sentence per problem.
    pub async fn accessibility_problems(&self) -> Result<Vec<String>> {
        let found = self
            .client
            .execute(ACCESSIBILITY_AUDIT, Vec::new())
            .await
            .map_err(|e| self.command_failed("run the accessibility audit", e))?;
        serde_json::from_value(found).map_err(|e| self.command_failed("read the accessibility audit", e))
    }

    /// Presses Tab from the top of the page until the focused element matches `css`; the number
    /// of presses, or `None` when `max_presses` did not reach it (it is not keyboard-reachable).
    pub async fn tab_to(&self, css: &str, max_presses: usize) -> Result<Option<usize>> {
        let failed = |e: CmdError| self.command_failed(&format!("tab to `{css}`"), e);
        let check = "const el = document.activeElement; return !!el && el.matches(arguments[0]);";
        // Blurring alone keeps the browser's focus-navigation starting point where it was:
        // focusing the body (briefly focusable) moves it to the top of the page.
        let to_top = "const body = document.body; body.setAttribute('tabindex', '-1'); body.focus(); \
                      window.scrollTo(0, 0);";
        self.client.execute(to_top, Vec::new()).await.map_err(failed)?;
        let body = self.client.find(Locator::Css("body")).await.map_err(failed)?;
        for presses in 1..=max_presses {
            // Keys go to the focused element; with none focused, to the body.
            let target = self.client.active_element().await.unwrap_or_else(|_| body.clone());
            target.send_keys("\u{E004}").await.map_err(failed)?;
            if presses == 1 {
                self.client.execute("document.body.removeAttribute('tabindex');", Vec::new()).await.map_err(failed)?;
            }
            let reached = self.client.execute(check, vec![serde_json::json!(css)]).await.map_err(failed)?;
            if reached.as_bool() == Some(true) {
                return Ok(Some(presses));
            }
        }
        Ok(None)
    }

    /// Saves a PNG of the viewport as `<dir>/<name>.png`; see [`screenshot`].
    pub async fn screenshot(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        screenshot(&self.client, dir, name).await
    }

    /// Grows the window so that the page itself gets the viewport's size: headless Chromium
    /// counts a (fake) toolbar in `--window-size`, leaving 1280×900 a page of 1280×757.
    async fn fit_viewport(&self) -> Result<()> {
        let script = "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]";
        let failed = |e: CmdError| self.command_failed("fit the window to the viewport", e);
        let frame = self.client.execute(script, Vec::new()).await.map_err(failed)?;
        let extra = |i: usize| frame.get(i).and_then(serde_json::Value::as_i64).unwrap_or(0).clamp(0, 1000) as u32;
        let (width, height) = (extra(0), extra(1));
        if width > 0 || height > 0 {
            self.client
                .set_window_size(self.viewport.width + width, self.viewport.height + height)
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// The first displayed element matching `xpath`, or why there is none yet.
    async fn first_displayed(&self, xpath: &str) -> Result<Result<Element, String>, CmdError> {
        let elements = self.client.find_all(Locator::XPath(xpath)).await?;
        let found = elements.len();
        for element in elements {
            if element.is_displayed().await? {
                return Ok(Ok(element));
            }
        }
        Ok(Err(if found == 0 { "none found".to_string() } else { format!("{found} found, none displayed") }))
    }

    /// Retries `attempt` until it yields a value or `timeout` passes. An element that vanished
    /// between finding and reading it (the page re-rendering) counts as "not yet", not as a
    /// failure.
    async fn poll<T, F, Fut>(&self, what: &str, timeout: Duration, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Result<T, String>, CmdError>>,
    {
        let started = Instant::now();
        loop {
            let why = match attempt().await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(why)) => why,
                Err(e) if e.is_stale_element_reference() || e.is_no_such_element() || replaced_by_navigation(&e) => {
                    e.to_string()
                }
                Err(e) => return Err(self.command_failed(&format!("wait for {what}"), e)),
            };
            if started.elapsed() >= timeout {
                return Err(self.not_ready(what.to_string(), started, why).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A timeout, with what the page showed then: that is what a person debugging it needs.
    async fn not_ready(&self, what: String, started: Instant, why: String) -> Error {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let text = match self.page_text().await {
            Ok(text) => shorten(&text, 600),
            Err(e) => format!("(unreadable: {e})"),
        };
        Error::NotReady {
            what,
            waited: started.elapsed(),
            last_error: format!("{why}; the page at {url} shows:\n{text}"),
            log: self.driver.process.log_path().to_path_buf(),
            tail: self.driver.process.log_tail(),
        }
    }

    fn command_failed(&self, what: &str, error: impl std::fmt::Display) -> Error {
        Error::CommandFailed {
            command: format!("WebDriver {what} (session {})", self.id),
            status: error.to_string(),
            tail: self.driver.log_tail(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed && !self.id.is_empty() {
            // The test's runtime may be unwinding, so nothing async can be relied on here; a
            // blocking request on loopback is short and does not need one.
            if let Err(e) = end_session_blocking(self.driver.port, &self.id) {
                tracing::warn!(session = %self.id, error = %e, "could not end the browser session");
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE /session/<id>`, which chromedriver answers once Chromium has quit.
fn end_session_blocking(port: u16, id: &str) -> std::io::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is enough: it only comes after the browser is gone.
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..read]);
    }
    Ok(())
}

/// Saves a PNG of `client`'s viewport as `<dir>/<name>.png` (`name` reduced to letters, digits,
/// `-`, `_` and `.`) and returns its path.
pub async fn screenshot(client: &Client, dir: &Path, name: &str) -> Result<PathBuf> {
    let png = client.screenshot().await.map_err(|e| Error::CommandFailed {
        command: format!("WebDriver take screenshot {name:?}"),
        status: e.to_string(),
        tail: String::new(),
    })?;
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(Error::CommandFailed {
            command: format!("WebDriver take screenshot {name:?}"),
            status: format!("the browser returned {} bytes that are not a PNG", png.len()),
            tail: String::new(),
        });
    }
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.png", file_name(name.strip_suffix(".png").unwrap_or(name))));
    std::fs::write(&path, png).context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The directory for one test's screenshots, created: `$TENANTRY_SCREENSHOTS/<test>`, else
/// `<cargo target dir>/browser-screenshots/<test>` (the target dir is `$CARGO_TARGET_DIR`, else
/// the workspace's `target/`). Kept after the run so a person can look at them.
pub fn screenshot_dir(test: &str) -> Result<PathBuf> {
    let base = match std::env::var_os(SCREENSHOTS_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("browser-screenshots"),
    };
    let dir = base.join(file_name(test));
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn target_dir() -> PathBuf {
    // This crate sits one level below the workspace root.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// `name` as a safe file name: a test name like `module::test` or a page title must not make
/// directories or escape the screenshot folder.
fn file_name(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let cleaned = cleaned.trim_matches('.');
    if cleaned.is_empty() { "unnamed".to_string() } else { cleaned.to_string() }
}

/// `text` as an XPath 1.0 string literal, which has no escapes: quotes of the other kind, or
/// `concat()` when both kinds occur.
fn xpath_literal(text: &str) -> String {
    if !text.contains('"') {
        format!("\"{text}\"")
    } else if !text.contains('\'') {
        format!("'{text}'")
    } else {
        let parts: Vec<String> = text.split('"').map(|part| format!("\"{part}\"")).collect();
        format!("concat({})", parts.join(", '\"', "))
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Chromium reports an element of a page that a navigation has just replaced as an "unknown
/// error" (not as a stale element) while the new page loads: for a wait, that is "not yet".
fn replaced_by_navigation(error: &CmdError) -> bool {
    error.to_string().contains("does not belong to the document")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xpath_literals_quote_any_text() {
        assert_eq!(xpath_literal("Email"), "\"Email\"");
        assert_eq!(xpath_literal("Say \"hi\""), "'Say \"hi\"'");
        assert_eq!(xpath_literal("it's \"x\""), "concat(\"it's \", '\"', \"x\", '\"', \"\")");
    }

    #[test]
    fn file_names_stay_in_their_folder() {
        assert_eq!(file_name("browser::signup form"), "browser__signup_form");
        assert_eq!(file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_name(".."), "unnamed");
        assert_eq!(file_name("progress-1.png"), "progress-1.png");
    }

    #[test]
    fn phone_sessions_emulate_a_phone_and_desktop_ones_do_not() {
        let phone = capabilities(Path::new("/tmp/p"), Viewport::PHONE);
        let options = &phone["goog:chromeOptions"];
        assert_eq!(options["mobileEmulation"]["deviceMetrics"]["width"], 390);
        assert!(options["args"].as_array().unwrap().iter().any(|a| a == "--user-data-dir=/tmp/p"));
        let desktop = capabilities(Path::new("/tmp/d"), Viewport::DESKTOP);
        let options = &desktop["goog:chromeOptions"];
        assert!(options.get("mobileEmulation").is_none());
        assert!(options["args"].as_array().unwrap().iter().any(|a| a == "--window-size=1280,900"));
        assert!(options["args"].as_array().unwrap().iter().any(|a| a == "--disable-background-networking"));
    }

    #[test]
    fn shortening_respects_characters() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("hi", 5), "hi");
    }
}
