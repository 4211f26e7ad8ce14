//! The real-browser infrastructure works end to end: a headless Chromium from Debian, driven
//! through chromedriver, fills and submits a form served on loopback, runs the page's
//! JavaScript, is laid out at desktop and phone sizes, and leaves screenshots behind — and a
//! browser whose test forgot to close it does not outlive its session.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::browser::{Browser, Session, Viewport, screenshot, screenshot_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// Panics with the error's own multi-line message (`unwrap` would print its `Debug` form).
fn ok<T>(result: e2e::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_form_is_filled_and_submitted_at_desktop_size() {
    let server = PageServer::start().await;
    let browser = ok(Browser::shared().await);
    let started = Instant::now();
    let session = ok(browser.new_session().await);
    eprintln!("desktop session started in {:?}", started.elapsed());
    let dir = ok(screenshot_dir("browser_form_desktop"));

    fill_and_submit(&session, &server, &dir).await;

    let (width, height) = viewport_size(&session).await;
    assert_eq!((width, height), (1280, 900), "the desktop window's viewport");
    let shot = ok(screenshot(&session, &dir, "welcome").await);
    assert_eq!(png_size(&shot), (1280, 900), "{}", shot.display());

    // A wait that times out says what the page showed, so a failing test explains itself.
    let error = session.wait_for("#never-there", Duration::from_millis(300)).await.unwrap_err().to_string();
    assert!(error.contains("#never-there") && error.contains(&server.url("/signup")), "{error}");
    assert!(error.contains("Welcome, Acme & Sons"), "{error}");

    ok(session.close().await);
}

#[tokio::test]
async fn the_same_form_works_on_a_phone_sized_screen() {
    let server = PageServer::start().await;
    let browser = ok(Browser::shared().await);
    let started = Instant::now();
    let session = ok(browser.new_phone_session().await);
    eprintln!("phone session started in {:?}", started.elapsed());
    assert_eq!(session.viewport(), Viewport::PHONE);
    let dir = ok(screenshot_dir("browser_form_phone"));

    ok(session.open(&server.url("/")).await);
    let (width, height) = viewport_size(&session).await;
    assert_eq!((width, height), (390, 844), "the phone's viewport");
    // Nothing wider than the screen: no sideways scrolling on a phone.
    let scroll_width = session.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(scroll_width.as_u64().is_some_and(|w| w <= 390), "page is {scroll_width} px wide");

    fill_and_submit(&session, &server, &dir).await;
    let shot = ok(screenshot(&session, &dir, "welcome").await);
    assert_eq!(png_size(&shot), (390, 844), "{}", shot.display());

    ok(session.close().await);
}

#[tokio::test]
async fn a_session_dropped_without_closing_stops_its_browser() {
    let server = PageServer::start().await;
    let browser = ok(Browser::shared().await);
    let session = ok(browser.new_session().await);
    ok(session.open(&server.url("/")).await);
    let pid = session
        .capabilities()
        .and_then(|c| c.get("goog:processID"))
        .and_then(|pid| pid.as_u64())
        .expect("chromedriver reports the browser's process id");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "browser {pid} is not running");

    // What a failing assertion does to a session: drop it, without `close`.
    drop(session);

    let deadline = Instant::now() + Duration::from_secs(10);
    while process_running(pid) {
        assert!(Instant::now() < deadline, "browser {pid} still runs after its session was dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The journey both sizes share: the page's script runs, reacts to typing, and the form posts.
async fn fill_and_submit(session: &Session, server: &PageServer, dir: &Path) {
    ok(session.open(&server.url("/")).await);
    ok(session.wait_for_text("#js-status", "JavaScript ran", WAIT).await);

    // Found by its label (`for`), by a label wrapping it (a select), and by its name.
    ok(session.fill("Company name", "Acme & Sons \"Ltd\"").await);
    ok(session.fill("Plan", "Team — 12 € per seat").await);
    ok(session.fill("seats", "7").await);
    // The script derived the slug while the name was typed.
    ok(session.wait_for_text("#slug", "acme-sons-ltd", WAIT).await);
    let shot = ok(screenshot(session, dir, "form").await);
    assert!(shot.is_file(), "{}", shot.display());

    ok(session.click_button("Sign up").await);
    ok(session.wait_for_text("h1", "Welcome, Acme & Sons \"Ltd\"!", WAIT).await);
    let text = ok(session.page_text().await);
    assert!(text.contains("Plan: team"), "{text}");
    assert!(text.contains("Seats: 7"), "{text}");
    assert!(text.contains("Slug: acme-sons-ltd"), "{text}");
}

async fn viewport_size(session: &Session) -> (u64, u64) {
    let size = session.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.unwrap();
    (size[0].as_u64().unwrap(), size[1].as_u64().unwrap())
}

/// Width and height from a PNG's header, after checking it is one.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR", "{} is no PNG", path.display());
    let number = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

fn process_running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// A tiny HTTP/1.1 server on loopback with a sign-up form and its result page: enough of a web
/// application to drive, without depending on the control plane.
struct PageServer {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    if let Err(e) = serve(stream).await {
                        eprintln!("page server: {e}");
                    }
                });
            }
        });
        Self { base, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection (`Connection: close`), which is all a browser needs.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let content_length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while request.len() < head_end + content_length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8_lossy(&request[head_end..]).into_owned();

    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let (status, page) = match (request_line.next(), request_line.next()) {
        (Some("GET"), Some("/")) => ("200 OK", FORM_PAGE.to_string()),
        (Some("POST"), Some("/signup")) => ("200 OK", welcome_page(&body)),
        _ => ("404 Not Found", "<!doctype html><title>Not found</title><p>Not found".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

const FORM_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign up</title>
<style>
  body { font-family: sans-serif; margin: 0 auto; padding: 1rem; max-width: 40rem; }
  label, input, select, button { display: block; width: 100%; box-sizing: border-box; font-size: 1rem; }
  input, select { margin: .25rem 0 1rem; padding: .5rem; }
  button { padding: .75rem; background: #1d4ed8; color: #fff; border: 0; }
</style>
</head>
<body>
<h1>Sign up</h1>
<p id="js-status">JavaScript did not run</p>
<form method="post" action="/signup">
  <input type="hidden" name="csrf" value="token">
  <label for="company">Company name</label>
  <input id="company" name="company" required>
  <p>Address: <span id="slug"></span></p>
  <input type="hidden" name="slug" id="slug-field">
  <label>Plan
    <select name="plan">
      <option value="starter">Starter — 8 € per seat</option>
      <option value="team">Team — 12 € per seat</option>
    </select>
  </label>
  <label for="seats">Number of seats</label>
  <input id="seats" name="seats" type="number" min="1" value="1">
  <button type="submit">Sign up</button>
</form>
<script>
  document.getElementById('js-status').textContent = 'JavaScript ran';
  const company = document.getElementById('company');
  company.addEventListener('input', () => {
    const slug = company.value.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
    document.getElementById('slug').textContent = slug;
    document.getElementById('slug-field').value = slug;
  });
</script>
</body>
</html>
"#;

fn welcome_page(form: &str) -> String {
    let field = |name: &str| {
        form.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| html_escape(&form_decode(value)))
            .unwrap_or_default()
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Welcome</title></head>\
         <body><h1>Welcome, {}!</h1><p>Plan: {}</p><p>Seats: {}</p><p>Slug: {}</p></body></html>",
        field("company"),
        field("plan"),
        field("seats"),
        field("slug"),
    )
}

/// `application/x-www-form-urlencoded` value: `+` is a space, `%XX` a byte of UTF-8.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[tokio::test]
async fn the_accessibility_audit_finds_what_it_checks() {
    let browser = ok(Browser::shared().await);
    let session = ok(browser.new_session().await);
    let bad = "<!DOCTYPE html><html><head></head><body>\
        <h1>One</h1><h3>Skipped a level</h3><h1>Two</h1>\
        <input type=text id=twice><span id=twice></span>\
        <button aria-describedby=nowhere></button>\
        <a href=/x tabindex=2>positive tabindex</a>\
        <p style='color:#999;background:#fff'>pale text</p>\
        <main></main></body></html>";
    ok(session.open(&format!("data:text/html,{}", urlencode(bad))).await);
    let problems = ok(session.accessibility_problems().await).join("\n");
    for expected in [
        "no lang attribute",
        "no <title>",
        "2 <h1> elements",
        "skips from h1 to h3",
        "the id \"twice\" is used 2 times",
        "<input#twice> has no accessible name",
        "\"nowhere\" but no element has that id",
        "<button> has no accessible name",
        "tabindex 2",
        "\"pale text\" has contrast 2.85:1 (needs 4.5:1)",
    ] {
        assert!(problems.contains(expected), "{expected:?} not found in:\n{problems}");
    }

    let good = "<!DOCTYPE html><html lang=en><head><title>Fine</title></head><body><main>\
        <h1>Fine</h1><h2>Part</h2><label for=name>Name</label><input id=name>\
        <button>Send</button><p style='color:#1b1f24'>dark text</p></main></body></html>";
    ok(session.open(&format!("data:text/html,{}", urlencode(good))).await);
    assert_eq!(ok(session.accessibility_problems().await), Vec::<String>::new());
    assert_eq!(ok(session.tab_to("#name", 5).await), Some(1), "the field is the first stop");
    assert_eq!(ok(session.tab_to("button", 5).await), Some(2));
    assert_eq!(ok(session.tab_to("#missing", 5).await), None);
    ok(session.close().await);
}

/// Percent-encodes everything but unreserved characters, for a `data:` URL.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
