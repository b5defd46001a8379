"""The web console in a real browser: headless Chromium driven by Selenium (Debian's chromium,
chromium-driver and python3-selenium; scripts/deps installs them).

ConsoleBrowserTests (Swift) starts what this needs and runs it:
  - a console (`--console`) that lets anonymous callers read, with the plan of service `web`
    registered: environments stage (canary) and prod (canary, manual approval), each a real proxy
    with traffic, whose start hook starts the new version (versions with "bad" answer 500);
  - a second, empty console (`--login-console`) that needs a login.

    /usr/bin/python3 console_test.py --console URL --login-console URL --token ADMIN_TOKEN --out DIR

Every check prints a line; the first failure prints what the page showed, saves a screenshot
and exits 1. Screenshots of the pages are saved in DIR.
"""
import argparse
import csv as csv_module
import io
import json
import os
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

SERVICE = "web"


class Failure(Exception):
    pass


# ---------------------------------------------------------------- browser and API helpers

class Browser:
    """One Chromium with its own cookies (one person at the console)."""
    drivers = []

    def __init__(self, url, out, name, width=1366, height=900):
        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                         "--lang=en-US", "--force-prefers-reduced-motion"]:
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.driver.set_script_timeout(30)
        self.url = url.rstrip("/")
        self.out = out
        self.name = name
        self.logs = []
        self.closed = False
        Browser.drivers.append(self)

    def open(self, path):
        self.driver.get(f"{self.url}/#{path}")

    def go(self, path):
        """Changes the page inside the app (no reload)."""
        self.driver.execute_script("window.location.hash = arguments[0]", path)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def js(self, script, *arguments):
        return self.driver.execute_script(script, *arguments)

    def fetch(self, method, path, body=None, csrf=False):
        """An API call from the page, with the session cookie (and its CSRF header if asked)."""
        return self.driver.execute_async_script("""
            const [method, path, body, csrf, done] = arguments;
            (async () => {
              const headers = { 'Content-Type': 'application/json' };
              if (csrf) {
                const session = await (await fetch('/api/v1/session')).json();
                if (session.csrf_token) headers['X-CSRF-Token'] = session.csrf_token;
              }
              const answer = await fetch(path, { method, headers, body: body === null ? undefined : JSON.stringify(body) });
              done({ status: answer.status, text: await answer.text() });
            })().catch((e) => done({ status: -1, text: String(e) }));
        """, method, path, body, csrf)

    def shot(self, name, full=True):
        path = os.path.join(self.out, f"{name}.png")
        size = self.driver.get_window_size()
        if full:
            height = self.js("return Math.min(document.documentElement.scrollHeight, 5000)")
            self.driver.set_window_size(size["width"], max(height, 400))
            time.sleep(0.2)
        self.driver.save_screenshot(path)
        if full:
            self.driver.set_window_size(size["width"], size["height"])
        return path

    def collect_logs(self):
        if self.closed:
            return self.logs
        try:
            self.logs += self.driver.get_log("browser")
        except WebDriverException:
            pass
        return self.logs

    def quit(self):
        if self.closed:
            return
        self.collect_logs()
        self.closed = True
        self.driver.quit()


def wait_for(what, condition, timeout=30, interval=0.1):
    """Polls `condition` until it answers something true; returns it. Fails naming `what` and the last answer."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = condition()
            if last:
                return last
        except WebDriverException as error:
            last = f"{type(error).__name__}: {error.msg}"
        time.sleep(interval)
    raise Failure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def check(condition, message):
    if not condition:
        raise Failure(message)


def login(browser, token, expect_actor):
    """Logs in with the token form (shown at once, or after "Log in" for an anonymous reader)."""
    browser.open("/")
    wait_for("the page to load", lambda: browser.all("#login-form") or browser.all("h1"))
    if not browser.all("#login-form"):
        wait_for("the Log in button", lambda: browser.find("#login-button").is_displayed())
        browser.find("#login-button").click()
    field = wait_for("the token field", lambda: browser.find("#login-token"))
    field.send_keys(token)
    browser.find("#login-submit").click()
    wait_for(f"the session of {expect_actor}", lambda: expect_actor in browser.find("#session-name").text)


def confirm(browser):
    wait_for("the confirmation dialog", lambda: browser.find("#confirm").get_attribute("open") is not None)
    browser.find("#confirm-ok").click()
    wait_for("the dialog to close", lambda: browser.find("#confirm").get_attribute("open") is None)


class API:
    def __init__(self, url, token):
        self.console = seed.Console(url, token)

    def get(self, path):
        status, answer = self.console.call("GET", path)
        if status != 200:
            raise Failure(f"GET {path} answered {status}: {answer}")
        return answer

    def post(self, path, body, expect=(200, 201, 202)):
        status, answer = self.console.call("POST", path, body)
        if status not in expect:
            raise Failure(f"POST {path} answered {status}: {answer}")
        return answer

    def token(self, name, role):
        return self.post("/api/v1/tokens", {"name": name, "role": role})["token"]

    def rollout(self, number):
        return self.get(f"/api/v1/rollouts/{number}")

    def wait_rollout(self, number, states, timeout=90):
        return wait_for(f"rollout #{number} to be {' or '.join(states)}",
                        lambda: (lambda r: r if r["rollout"]["state"] in states else None)(self.rollout(number)), timeout=timeout, interval=0.3)


def a11y_problems(browser):
    """Inputs without labels, buttons and links without names, images without text, tables without header cells."""
    return browser.js("""
        const problems = [];
        const named = (e) => (e.getAttribute('aria-label') || e.textContent || e.getAttribute('title') || '').trim().length > 0;
        for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
          if (e.closest('[hidden]')) continue;
          if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.closest('label')) problems.push(`unlabelled ${e.tagName} #${e.id}`);
        }
        for (const e of document.querySelectorAll('button, a[href]')) if (!named(e) && e.offsetParent) problems.push(`nameless ${e.tagName} ${e.outerHTML.slice(0, 80)}`);
        for (const e of document.querySelectorAll('svg[role=img]')) if (!e.getAttribute('aria-label')) problems.push('chart without a text');
        for (const t of document.querySelectorAll('main table')) if (!t.querySelector('th')) problems.push(`table without header cells: ${t.id || t.className}`);
        if (!document.querySelector('main h1')) problems.push('no h1');
        return problems;
    """)


# ---------------------------------------------------------------- the checks

def login_page(args, out):
    """A console without anonymous reading shows the token form; a wrong token is refused; logging out returns to it."""
    browser = Browser(args.login_console, out, "login")
    browser.open("/")
    wait_for("the login form", lambda: browser.find("#login-form").is_displayed())
    check(browser.js("return document.activeElement.id") == "login-token", "the token field does not have the focus")
    browser.shot("login", full=False)
    browser.find("#login-token").send_keys("not-a-token")
    browser.find("#login-submit").click()
    wait_for("the refusal", lambda: "not known" in browser.find("#login-error").text)
    browser.find("#login-token").clear()
    browser.find("#login-token").send_keys(args.token + Keys.ENTER)
    wait_for("the overview", lambda: browser.find("main h1").text == "Services")
    check("admin" in browser.find("#session-name").text, "the header does not name the admin")
    check(browser.find("#logout-button").is_displayed(), "no Log out button")
    check(browser.find("[data-nav=deploy]").is_displayed(), "an admin does not see the Deploy link")
    browser.find("#logout-button").click()
    wait_for("the login form after logging out", lambda: browser.find("#login-form").is_displayed())
    status = browser.fetch("GET", "/api/v1/rollouts")["status"]
    check(status == 401, f"after logging out the API still answers {status}")
    browser.quit()


def overview_versions(args, out, api):
    """The overview shows, per service and environment, the version live there; filters and sorting work; the render time is measured."""
    expected = seed.seed_overview(api.console, services=100)
    browser = Browser(args.console, out, "overview")
    login(browser, args.token, "admin")
    browser.open("/")
    browser.driver.refresh()
    wait_for("101 service rows", lambda: len(browser.all("#overview-table tbody tr[data-service]")) >= 101, timeout=30)
    shown = browser.js("""
        const out = {};
        for (const row of document.querySelectorAll('#overview-table tbody tr[data-service]')) {
          out[row.dataset.service] = {};
          for (const cell of row.querySelectorAll('td[data-environment]')) out[row.dataset.service][cell.dataset.environment] = cell.dataset.version;
        }
        return out;
    """)
    wrong = [f"{s}/{e}: {shown.get(s, {}).get(e)!r} instead of {v}" for s, envs in expected.items() for e, v in envs.items() if shown.get(s, {}).get(e) != v]
    check(not wrong, f"{len(wrong)} cells show the wrong version, e.g. {wrong[:5]}")
    headers = [th.text.replace("↕", "").replace("↑", "").replace("↓", "").strip() for th in browser.all("#overview-table thead th")]
    check(headers[:1] == ["Service"] and {"dev", "stage", "prod", "eu"} <= set(headers), f"unexpected columns {headers}")
    # web's plan orders its environments: stage before prod.
    check(headers.index("stage") < headers.index("prod"), f"stage should come before prod: {headers}")
    times = [t for t in browser.js("return window.switchyardRenderTimes || []") if t["services"] >= 100]
    check(times, "no render time was recorded")
    first = times[0]["ms"]
    later = ", ".join("%.1f" % t["ms"] for t in times[1:6]) or "none"
    print(f"measure: overview render of {times[0]['services']} services x 4 environments: {first:.1f} ms (later renders: {later})")
    check(first < 5000, f"the overview took {first:.0f} ms to render")
    browser.shot("overview-full")
    browser.shot("overview", full=False)

    # Filter (kept in the URL), then sort by a column with the keyboard.
    field = browser.find("#overview-filter")
    field.send_keys("service-042")
    wait_for("one row after filtering", lambda: len(browser.all("#overview-table tbody tr[data-service]")) == 1)
    check("q=service-042" in browser.driver.current_url, f"the filter is not in the URL: {browser.driver.current_url}")
    browser.driver.refresh()
    wait_for("the filter to survive a reload", lambda: len(browser.all("#overview-table tbody tr[data-service]")) == 1)
    browser.find("#overview-filter").send_keys(Keys.CONTROL, "a")
    browser.find("#overview-filter").send_keys(Keys.BACKSPACE)
    wait_for("every row again", lambda: len(browser.all("#overview-table tbody tr[data-service]")) >= 101)
    button = browser.find("button[data-sort=service]")
    button.send_keys(Keys.ENTER)
    wait_for("descending order", lambda: browser.find("#overview-table thead th").get_attribute("aria-sort") == "descending")
    first_row = browser.find("#overview-table tbody tr[data-service]").get_attribute("data-service")
    check(first_row == "web", f"sorted descending, the first service is {first_row}")
    check(browser.js("return document.activeElement.dataset.sort") == "service", "sorting lost the keyboard focus")
    outline = browser.js("return getComputedStyle(document.activeElement).outlineStyle")
    check(outline not in ("none", ""), f"the focused sort button shows no outline ({outline})")
    problems = a11y_problems(browser)
    check(not problems, f"accessibility: {problems}")
    browser.quit()


def deploy_from_the_form(args, out, api, deployer_token):
    """A deployer starts a rollout from the deploy form; it advances on screen without a reload; the deployer cannot approve."""
    browser = Browser(args.console, out, "deployer")
    login(browser, deployer_token, "dora")
    browser.go(f"/deploy?service={SERVICE}")
    wait_for("the plan's steps", lambda: len(browser.all("#deploy-preview li[data-environment]")) == 2)
    plan = api.get(f"/api/v1/plans/{SERVICE}")
    for environment in plan["environments"]:
        steps = [li.text for li in browser.all(f"#deploy-preview li[data-environment={environment['name']}] .steps li")]
        check(steps == environment["steps"], f"{environment['name']}: the form shows steps {steps}, the plan has {environment['steps']}")
    check(a11y_problems(browser) == [], f"accessibility: {a11y_problems(browser)}")
    browser.shot("deploy")
    # A bad version is refused in the form; nothing starts.
    browser.find("#deploy-version").send_keys("not ok!")
    browser.find("#deploy-submit").click()
    wait_for("the version error", lambda: "only letters" in browser.find("#version-error").text)
    check(browser.find("#confirm").get_attribute("open") is None, "a bad version opened the confirmation")
    browser.find("#deploy-version").clear()
    browser.find("#deploy-version").send_keys("v2.0.1")
    # Escape cancels the confirmation: nothing starts.
    browser.find("#deploy-submit").click()
    wait_for("the confirmation dialog", lambda: browser.find("#confirm").get_attribute("open") is not None)
    browser.find("#confirm-ok").send_keys(Keys.ESCAPE)
    wait_for("the dialog to close", lambda: browser.find("#confirm").get_attribute("open") is None)
    check(not api.get(f"/api/v1/rollouts?service={SERVICE}")["rollouts"], "a cancelled confirmation started a rollout")
    browser.find("#deploy-submit").click()
    confirm(browser)
    number = int(wait_for("the rollout page", lambda: (lambda u: u.split("#/rollouts/")[1] if "#/rollouts/" in u else None)(browser.driver.current_url)))
    browser.js("window.switchyardNoReload = true")
    seen = []

    def progress():
        stage = browser.find("#pipeline li[data-environment=stage]")
        text = stage.text.replace("\n", " | ")
        if not seen or seen[-1] != text:
            seen.append(text)
        return stage.get_attribute("data-state") == "promoted"
    wait_for("stage to be promoted on screen", progress, timeout=90)
    wait_for("prod waiting for approval on screen", lambda: "waiting for approval" in browser.find("#rollout-state").text, timeout=60)
    check(browser.js("return window.switchyardNoReload === true"), "the page reloaded")
    check(len(seen) >= 3, f"the stage box changed only {len(seen)} times: {seen}")
    print(f"  the stage box went through {len(seen)} states on screen, e.g. {seen[:4]}")
    check(not browser.all("#control-approve"), "a deployer sees the Approve button")
    check(browser.find("#control-pause").is_displayed(), "a deployer does not see Pause")
    browser.shot("rollout-waiting")
    browser.go("/?q=web")
    cell = lambda environment: browser.find(f"#overview-table tr[data-service=web] td[data-environment={environment}]")  # noqa: E731
    wait_for("the overview's web row", lambda: cell("prod").get_attribute("data-state") == "approval")
    check(cell("stage").get_attribute("data-version") == "v2.0.1", f"stage shows {cell('stage').get_attribute('data-version')}")
    check(cell("prod").get_attribute("data-version") == "", "prod shows a version before any was promoted there")
    check(browser.js("return window.switchyardNoReload === true"), "the page reloaded")
    browser.quit()
    return number


def viewer_sees_no_buttons(args, out, number, viewer_token):
    """An anonymous reader and a viewer see no buttons, and the API refuses them anyway."""
    anonymous = Browser(args.console, out, "anonymous")
    anonymous.open(f"/rollouts/{number}")
    wait_for("the rollout waiting for approval", lambda: "waiting for approval" in anonymous.find("#rollout-state").text)
    check(not anonymous.all("#rollout-controls button"), "an anonymous reader sees control buttons")
    check(not anonymous.find("#rollout-controls").is_displayed(), "the controls box is shown to an anonymous reader")
    check(not anonymous.find("[data-nav=deploy]").is_displayed(), "an anonymous reader sees the Deploy link")
    check(anonymous.find("#login-button").is_displayed(), "an anonymous reader is not offered a login")
    answer = anonymous.fetch("POST", f"/api/v1/rollouts/{number}/approve", {"wait": 0})
    check(answer["status"] in (401, 403), f"the API let an anonymous reader approve: {answer}")
    anonymous.go("/deploy")
    wait_for("the deploy page", lambda: anonymous.find("main h1").text.startswith("Deploy"))
    check(not anonymous.find("#deploy-submit").is_displayed(), "an anonymous reader sees Start rollout")
    anonymous.go(f"/services/{SERVICE}/environments/stage")
    wait_for("the environment page", lambda: anonymous.all("#versions-table"))
    check(not anonymous.all("button.rollback"), "an anonymous reader sees Roll back")
    anonymous.quit()

    viewer = Browser(args.console, out, "viewer")
    login(viewer, viewer_token, "vera")
    viewer.open(f"/rollouts/{number}")
    wait_for("the rollout page", lambda: "waiting for approval" in viewer.find("#rollout-state").text)
    check(not viewer.all("#rollout-controls button"), "a viewer sees control buttons")
    for command in ["approve", "abort", "pause"]:
        answer = viewer.fetch("POST", f"/api/v1/rollouts/{number}/{command}", {"wait": 0}, csrf=True)
        check(answer["status"] == 403 and "viewer" in answer["text"], f"the API let a viewer {command}: {answer}")
    answer = viewer.fetch("POST", "/api/v1/rollouts", {"service": SERVICE, "version": "v9"}, csrf=True)
    check(answer["status"] == 403, f"the API let a viewer deploy: {answer}")
    viewer.quit()


def approve_in_the_browser(args, out, api, number, approver_token):
    """An approver approves in the browser; the waiting runner continues and promotes; the approval is audited."""
    # Someone watching the overview sees prod change without reloading.
    watcher = Browser(args.console, out, "watcher")
    watcher.open("/?q=web")
    prod_cell = lambda: watcher.find("#overview-table tr[data-service=web] td[data-environment=prod]")  # noqa: E731
    wait_for("prod waiting for approval on the overview", lambda: prod_cell().get_attribute("data-state") == "approval")
    watcher.js("window.switchyardNoReload = true")
    browser = Browser(args.console, out, "approver")
    login(browser, approver_token, "april")
    browser.open(f"/rollouts/{number}")
    button = wait_for("the Approve button", lambda: browser.find("#control-approve"))
    check("prod" in button.text, f"the button says {button.text!r}")
    button.click()
    confirm(browser)
    wait_for("the rollout promoted on screen", lambda: browser.find("#rollout-state").get_attribute("data-state") == "promoted", timeout=90)
    api.wait_rollout(number, ["promoted"], timeout=10)
    audit = api.get("/api/v1/audit?target=rollout/")["audit"]
    check(any(a["action"] == "approve" and a["actor"] == "april" and a["target"] == f"rollout/{number}" for a in audit),
          "the approval is not in the audit trail")
    check(not browser.all("#rollout-controls button"), "a finished rollout still shows controls")
    browser.quit()
    wait_for("v2.0.1 live in prod on the overview", lambda: prod_cell().get_attribute("data-version") == "v2.0.1" and prod_cell().get_attribute("data-state") == "idle")
    check(watcher.js("return window.switchyardNoReload === true"), "the overview reloaded")
    watcher.quit()


def charts_get_points(args, out, number):
    """The rollout's and the service's charts draw data points (from the proxies' traffic and the analysis)."""
    browser = Browser(args.console, out, "charts")
    login(browser, args.token, "admin")
    browser.open(f"/rollouts/{number}")
    for chart in ["chart-stage-rate", "chart-stage-errors", "chart-stage-p99", "chart-prod-rate"]:
        points = wait_for(f"points in {chart}", lambda c=chart: int(browser.find(f"#{c}").get_attribute("data-points") or 0), timeout=20)
        print(f"  {chart}: {points} points")
    thresholds = browser.all("#chart-stage-errors .threshold")
    check(thresholds, "the error-rate chart draws no threshold line")
    check(browser.all(f"table.analysis[data-environment=stage] tbody tr"), "no analysis rows for stage")
    check(a11y_problems(browser) == [], f"accessibility: {a11y_problems(browser)}")
    browser.shot("rollout")
    browser.go(f"/services/{SERVICE}")
    for chart in ["traffic-stage-rate", "traffic-prod-p99"]:
        wait_for(f"points in {chart}", lambda c=chart: int(browser.find(f"#{c}").get_attribute("data-points") or 0) > 0, timeout=20)
    wait_for("the servers tables", lambda: len(browser.all("table.servers")) == 2)
    wait_for("the audit trail", lambda: browser.all("#audit-table tbody tr"))
    check(a11y_problems(browser) == [], f"accessibility: {a11y_problems(browser)}")
    browser.shot("service")
    browser.quit()


def rolled_back_rollout(args, out, api, deployer_token):
    """A rollout the analysis rolls back shows why and the start hook's output, live."""
    deployer = API(args.console, deployer_token)
    started = deployer.post("/api/v1/rollouts", {"service": SERVICE, "version": "v3-bad", "environments": ["stage"]})
    number = started["id"]
    browser = Browser(args.console, out, "rolled-back")
    login(browser, args.token, "admin")
    browser.open(f"/rollouts/{number}")
    wait_for("the rollout rolled back on screen", lambda: browser.find("#rollout-state").get_attribute("data-state") == "rolled_back", timeout=90)
    reason = api.rollout(number)["rollout"]["reason"]
    shown = wait_for("the reason", lambda: browser.find("#rollout-reason").text)
    check(reason and reason in shown, f"the page shows {shown!r}, the rollout's reason is {reason!r}")
    # The lab's start hook prints "started SERVER-VERSION on port N" for the instance it started.
    wait_for("the start hook's output in the log", lambda: "-v3-bad on port" in browser.find("#rollout-log").text)
    hooks = browser.all("#env-stage details.hook")
    check(hooks, "no hook in the stage section")
    check(browser.find("#env-stage [data-role=reason]").is_displayed(), "the stage section does not say why it rolled back")
    browser.shot("rollout-rolled-back")
    # The overview keeps the version that is live and says what happened to the new one.
    browser.go("/?q=web")
    stage = wait_for("web's stage cell", lambda: browser.find("#overview-table tr[data-service=web] td[data-environment=stage]"))
    check(stage.get_attribute("data-version") == "v2.0.1" and stage.get_attribute("data-state") == "rolled_back",
          f"the overview's stage cell: {stage.get_attribute('data-version')} {stage.get_attribute('data-state')}")
    browser.quit()
    return number


def roll_back_to_a_version(args, out, api, deployer_token):
    """From the environment page, "roll back to this version" starts a rollback that ends with that version live."""
    deployer = API(args.console, deployer_token)
    newer = deployer.post("/api/v1/rollouts", {"service": SERVICE, "version": "v2.0.2", "environments": ["stage"]})
    api.wait_rollout(newer["id"], ["promoted"])
    browser = Browser(args.console, out, "rollback")
    login(browser, deployer_token, "dora")
    browser.open(f"/services/{SERVICE}/environments/stage")
    button = wait_for("the roll back button of v2.0.1", lambda: browser.find("#versions-table tr[data-version='v2.0.1'] button.rollback"))
    check(not browser.all("#versions-table tr[data-version='v2.0.2'] button.rollback"), "the live version offers a roll back to itself")
    browser.shot("environment")
    button.click()
    confirm(browser)
    number = int(wait_for("the rollback's page", lambda: (lambda u: u.split("#/rollouts/")[1] if "#/rollouts/" in u else None)(browser.driver.current_url)))
    wait_for("the rollback promoted on screen", lambda: browser.find("#rollout-state").get_attribute("data-state") == "promoted", timeout=90)
    check(api.rollout(number)["rollout"]["kind"] == "rollback", "the rollout is not a rollback")
    browser.go("/?q=web")
    wait_for("stage back at v2.0.1 on the overview",
             lambda: browser.find("#overview-table tr[data-service=web] td[data-environment=stage]").get_attribute("data-version") == "v2.0.1")
    browser.quit()


def history_and_export(args, out):
    """History filters by outcome (in the URL) and exports what it shows as CSV and JSON."""
    browser = Browser(args.console, out, "history")
    login(browser, args.token, "admin")
    browser.open(f"/history?service={SERVICE}")
    wait_for("deployments of web", lambda: len(browser.all("#deployments-table tbody tr[data-outcome]")) >= 4)
    browser.shot("history")
    select = browser.find("#history-outcome")
    select.send_keys("rolled back")
    browser.find("#history-filters button[type=submit]").click()
    wait_for("only rolled-back rows", lambda: (lambda rows: rows and all(r.get_attribute("data-outcome") == "rolled_back" for r in rows))(
        browser.all("#deployments-table tbody tr[data-outcome]")))
    check("outcome=rolled_back" in browser.driver.current_url, f"the filter is not in the URL: {browser.driver.current_url}")
    csv_link = browser.find("#export-csv").get_attribute("href")
    check("format=csv" in csv_link and "outcome=rolled_back" in csv_link, f"the CSV link ignores the filters: {csv_link}")
    csv = browser.fetch("GET", csv_link)
    check(csv["status"] == 200 and csv["text"].startswith("id,rollout,service") and "v3-bad" in csv["text"], f"the CSV export: {csv}")
    records = list(csv_module.DictReader(io.StringIO(csv["text"])))
    check(records and all(r["outcome"] == "rolled_back" for r in records), f"the CSV export holds deployments the filter excludes: {records}")
    exported = browser.fetch("GET", browser.find("#export-json").get_attribute("href"))
    rows = json.loads(exported["text"])["deployments"]
    check(rows and all(r["outcome"] == "rolled_back" for r in rows), f"the JSON export: {exported['text'][:200]}")
    check(a11y_problems(browser) == [], f"accessibility: {a11y_problems(browser)}")
    browser.quit()


def statistics_page(args, out):
    """Statistics show the four measures per service and environment, with charts that draw."""
    browser = Browser(args.console, out, "statistics")
    login(browser, args.token, "admin")
    browser.open("/statistics")
    row = wait_for("web/stage in the table", lambda: browser.find("#stats-table tr[data-service=web][data-environment=stage]"))
    cells = [td.text for td in row.find_elements(By.CSS_SELECTOR, "td")]
    check(int(cells[1]) >= 3, f"web/stage counts {cells[1]} deployments")
    charts = browser.all("#stats-body figure.chart-box")
    check(len(charts) == 5, f"{len(charts)} charts instead of 5")
    for chart in charts[:3]:
        check(int(chart.get_attribute("data-points")) > 0, f"the chart {chart.find_element(By.TAG_NAME, 'figcaption').text} is empty")
    check(a11y_problems(browser) == [], f"accessibility: {a11y_problems(browser)}")
    browser.shot("statistics", full=False)
    browser.quit()


def phone_layout(args, out, number):
    """On a phone's width the pages do not scroll sideways (tables scroll inside their own box)."""
    browser = Browser(args.console, out, "phone", width=390, height=844)
    login(browser, args.token, "admin")
    for path, name in [("/?q=service-00", "overview-phone"), (f"/rollouts/{number}", "rollout-phone"), (f"/services/{SERVICE}", "service-phone")]:
        browser.open(path)
        wait_for(f"{path} to load", lambda: browser.all("main h1") and not browser.all("main .loading"))
        time.sleep(1)
        wide = browser.js("return document.documentElement.scrollWidth - window.innerWidth")
        check(wide <= 1, f"{path} is {wide}px wider than the phone's screen")
        browser.shot(name, full=False)
    browser.quit()


def no_page_errors():
    """No script error and no Content-Security-Policy violation in any browser (only the API's deliberate refusals)."""
    problems = []
    for browser in Browser.drivers:
        for entry in browser.collect_logs():
            message = entry["message"]
            if entry["level"] != "SEVERE":
                continue
            if "Failed to load resource" in message and ("/api/v1/" in message):
                continue  # 401 on /session before a login, refusals the checks asked for
            problems.append(f"{browser.name}: {message[:300]}")
    check(not problems, "errors in the browser console:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description="The web console's browser tests")
    parser.add_argument("--console", required=True)
    parser.add_argument("--login-console", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    api = API(args.console, args.token)
    tokens = {name: api.token(name, role) for name, role in [("dora", "deployer"), ("april", "approver"), ("vera", "viewer")]}
    seed.seed_stories(api.console)
    started = time.time()
    step = "setup"
    try:
        step = "login page"; t = time.time(); login_page(args, args.out); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "overview versions"; t = time.time(); overview_versions(args, args.out, api); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "deploy from the form"; t = time.time(); number = deploy_from_the_form(args, args.out, api, tokens["dora"]); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "viewer sees no buttons"; t = time.time(); viewer_sees_no_buttons(args, args.out, number, tokens["vera"]); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "approve in the browser"; t = time.time(); approve_in_the_browser(args, args.out, api, number, tokens["april"]); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "charts get points"; t = time.time(); charts_get_points(args, args.out, number); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "rolled-back rollout"; t = time.time(); bad = rolled_back_rollout(args, args.out, api, tokens["dora"]); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "roll back to a version"; t = time.time(); roll_back_to_a_version(args, args.out, api, tokens["dora"]); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "history and export"; t = time.time(); history_and_export(args, args.out); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "statistics"; t = time.time(); statistics_page(args, args.out); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "phone layout"; t = time.time(); phone_layout(args, args.out, bad); print(f"ok: {step} ({time.time() - t:.1f}s)")
        step = "no page errors"; no_page_errors(); print(f"ok: {step}")
    except Exception as error:  # noqa: BLE001 - every failure is reported with what the browser showed
        print(f"FAILED: {step}: {error}")
        if not isinstance(error, Failure):
            traceback.print_exc(file=sys.stdout)
        for browser in [b for b in Browser.drivers if not b.closed]:
            try:
                path = browser.shot(f"failure-{browser.name}", full=False)
                print(f"  {browser.name}: {browser.driver.current_url} (screenshot {path})")
                print("  page text: " + browser.find("main").text[:1500].replace("\n", " | "))
                for entry in browser.collect_logs()[-10:]:
                    print(f"  console {entry['level']}: {entry['message'][:300]}")
            except WebDriverException:
                pass
        return 1
    finally:
        for browser in Browser.drivers:
            try:
                browser.quit()
            except WebDriverException:
                pass
    print(f"all browser checks passed in {time.time() - started:.1f}s; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
