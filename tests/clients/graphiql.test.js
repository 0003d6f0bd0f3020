// GraphiQL in a real browser: Debian's Chromium (/usr/bin/chromium, never a downloaded build)
// driven by playwright-core. It loads `/`, types `{ __typename }` into the query editor, clicks
// the run button and reads "Query" in the result pane, then saves a screenshot. A second test
// needs the schema (GraphiQL's introspection must be answered): it opens the Docs pane, finds
// Query.me and Mutation.requestCode, and sees the editor offer `invitedUsers` for `{ me { inv`.
//
// The machine that runs CI has no internet access, so this passes only when the server was built
// with GraphiQL's bundles embedded (`npm ci --prefix graphiql-assets` before `cargo build`); the
// test also fails if the page asks any other origin for anything or breaks its own CSP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { artifactsDir, baseUrl } from "./support.js";

const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const browserRequired = ["1", "true"].includes(process.env.REQUIRE_BROWSER ?? "");
const noBrowser = !existsSync(executablePath)
  ? `${executablePath} is missing (apt-get install chromium)`
  : false;

/**
 * Chromium with a fresh profile, on GraphiQL at `/`. Returns the page and the lists that collect
 * requests to other origins and script errors (CSP violations included).
 */
async function openGraphiql(t) {
  assert.ok(!noBrowser, noBrowser || "");
  const profile = mkdtempSync(join(tmpdir(), "phone-auth-chromium-"));
  // A fresh profile (playwright passes it as --user-data-dir) and no background traffic: this
  // machine's network is closed, and Chromium's own update/sync calls would only fail noisily.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });

  const page = context.pages()[0] ?? (await context.newPage());
  const origin = new URL(baseUrl).origin;
  const foreign = [];
  const problems = [];
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (!["data:", "blob:"].includes(url.protocol) && url.origin !== origin) {
      foreign.push(request.url());
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // A CSP violation is reported as a console error; so is a failed script.
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });

  const response = await page.goto(`${baseUrl}/`, { waitUntil: "load" });
  assert.equal(response?.status(), 200);
  const csp = response?.headers()["content-security-policy"] ?? "";
  assert.match(csp, /script-src 'self'/, "the offline page (with its CSP) is served");
  const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
  await editor.waitFor({ state: "visible", timeout: 30_000 });
  return { page, editor, foreign, problems };
}

test(
  "GraphiQL at / runs { __typename } from its own assets",
  { skip: browserRequired ? false : noBrowser, timeout: 90_000 },
  async (t) => {
    const { page, editor, foreign, problems } = await openGraphiql(t);

    // Type the query like a person: focus the editor, select everything, type over it.
    await editor.click();
    await page.keyboard.press("Control+A");
    await page.keyboard.press("Delete");
    // CodeMirror closes brackets itself: typing "}" over the inserted one just steps past it.
    await page.keyboard.type("{ __typename }", { delay: 20 });
    await page.keyboard.press("Escape"); // closes the autocompletion popup, if one is open
    // The editor's lines, without the line-number gutter.
    const typed = await page.locator(".graphiql-query-editor .CodeMirror-line").allInnerTexts();
    assert.equal(typed.join("\n").replace(/\s+/g, " ").trim(), "{ __typename }");

    await page.locator("button.graphiql-execute-button").click();
    const result = page.locator(".graphiql-response .CodeMirror-code").first();
    await result.filter({ hasText: '"Query"' }).waitFor({ timeout: 30_000 });
    const lines = await page.locator(".graphiql-response .CodeMirror-line").allInnerTexts();
    assert.match(lines.join("\n"), /"__typename":\s*"Query"/);

    // Subscriptions use a WebSocket to /graphql: the page's CSP (connect-src 'self') must let
    // GraphiQL open it, and the server must speak graphql-transport-ws there.
    const protocol = await page.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const url = new URL("/graphql", window.location.href);
          url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
          const socket = new WebSocket(url, "graphql-transport-ws");
          socket.onopen = () => {
            resolve(socket.protocol);
            socket.close();
          };
          socket.onerror = () => reject(new Error("the WebSocket to /graphql failed"));
        }),
    );
    assert.equal(protocol, "graphql-transport-ws");

    mkdirSync(artifactsDir, { recursive: true });
    const screenshot = join(artifactsDir, "graphiql.png");
    await page.screenshot({ path: screenshot });
    t.diagnostic(`screenshot: ${screenshot}`);

    assert.deepEqual(foreign, [], "every request stays on the server's origin");
    assert.deepEqual(problems, [], "no script errors or CSP violations");
  },
);

test(
  "GraphiQL has the schema: Docs pane with Query.me and Mutation.requestCode, autocompletion",
  { skip: browserRequired ? false : noBrowser, timeout: 90_000 },
  async (t) => {
    const { page, editor, foreign, problems } = await openGraphiql(t);

    // The Docs button exists only once GraphiQL has loaded the schema by introspection.
    const docsButton = page.getByRole("button", { name: "Show Documentation Explorer" });
    await docsButton.waitFor({ state: "visible", timeout: 30_000 });
    await docsButton.click();
    const docs = page.locator("section.graphiql-doc-explorer");
    await docs.waitFor({ state: "visible", timeout: 30_000 });

    const rootType = async (name) => {
      await docs.locator("a.graphiql-doc-explorer-type-name", { hasText: new RegExp(`^${name}$`) }).first().click();
      await docs.locator(".graphiql-doc-explorer-title", { hasText: name }).waitFor({ timeout: 10_000 });
    };
    const fieldNames = () => docs.locator("a.graphiql-doc-explorer-field-name").allInnerTexts();

    await rootType("Query");
    assert.ok((await fieldNames()).includes("me"), `Query's fields: ${await fieldNames()}`);
    await docs.locator(".graphiql-doc-explorer-back").click();
    await rootType("Mutation");
    assert.ok(
      (await fieldNames()).includes("requestCode"),
      `Mutation's fields: ${await fieldNames()}`,
    );

    // Autocompletion from the schema: typing `{ me { inv` offers invitedUsers.
    await editor.click();
    await page.keyboard.press("Control+A");
    await page.keyboard.press("Delete");
    await page.keyboard.type("{ me { inv", { delay: 40 });
    const hint = page.locator("ul.CodeMirror-hints li.CodeMirror-hint", { hasText: "invitedUsers" });
    await hint.first().waitFor({ state: "visible", timeout: 15_000 });

    mkdirSync(artifactsDir, { recursive: true });
    await page.screenshot({ path: join(artifactsDir, "graphiql-docs.png") });
    assert.deepEqual(foreign, [], "every request stays on the server's origin");
    assert.deepEqual(problems, [], "no script errors or CSP violations");
  },
);
