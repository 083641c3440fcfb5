// The dashboard end to end in Debian's headless Chromium (playwright-core, no bundled browser):
// sign in, create a server with telemetry, copy the shown key, run the shown Python snippet
// against the appliance, see the calls in analytics, switch the range, drill down tool -> span
// list -> trace, generate and revoke keys through the confirmation dialogs, a member of another
// organization refused, and a user changing their password (their other session signed out). Screenshots of every page go to test-artifacts/e2e/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Appliance, PASSWORD, tempDir } from '../sdk/typescript/test/appliance.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = path.resolve(HERE, '../test-artifacts/e2e');
const PYTHON = process.env.MCPOBS_E2E_PYTHON || path.resolve(HERE, '../sdk/python/.venv-mcp2/bin/python');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CALLS = 6;

let app;
let browser;
const cspErrors = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  app = await new Appliance().start();
  // Another organization, whose owner must not see "default".
  const [s] = await app.request('POST', '/api/v1/users', { username: 'eve', password: 'eve-password-1' });
  assert.equal(s, 201);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: app.base });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) cspErrors.push(m.text());
  });
  return page;
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

async function signIn(page, username, password) {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

test('the whole dashboard flow', async () => {
  const page = await newPage();

  // Sign in: an unauthenticated visit lands on the form, a wrong password is explained.
  await page.goto(`${app.base}/orgs/default`);
  assert.match(page.url(), /\/login\?next=%2Forgs%2Fdefault$/);
  await shot(page, '01-sign-in');
  await signIn(page, 'admin', 'wrong-password');
  assert.match(await page.textContent('[role=alert]'), /invalid username or password/);
  await shot(page, '02-sign-in-error');
  await signIn(page, 'admin', PASSWORD);
  assert.equal(new URL(page.url()).pathname, '/orgs/default');
  assert.match(await page.textContent('main'), /Connect your first MCP server/);
  await shot(page, '03-overview-empty');

  // Create a server with telemetry, in the overview's dialog (no page change); Cancel closes it.
  await page.click('.page-head a:has-text("New MCP server")');
  await page.waitForSelector('dialog#new-server[open]');
  assert.equal(new URL(page.url()).pathname, '/orgs/default', 'a dialog, not another page');
  await page.click('dialog[open] a:has-text("Cancel")');
  assert.equal(await page.isVisible('dialog#new-server'), false);
  await page.click('.empty a:has-text("New MCP server")');
  await page.waitForSelector('dialog#new-server[open]');
  await shot(page, '04-new-server-dialog');
  // Then the key is shown once, with a working copy button.
  await page.fill('#new-server-name', 'weather');
  assert.ok(await page.isChecked('dialog[open] input[name=telemetry_enabled]'));
  await Promise.all([page.waitForNavigation(), page.click('dialog[open] button:has-text("Create server")')]);
  const key = (await page.textContent('#new-key')).trim();
  assert.match(key, /^mcpobs_live_[A-Za-z0-9]{40}$/);
  await page.click('button:has-text("Copy key")');
  await page.waitForSelector('button[data-copied]');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
  await shot(page, '05-server-created-key-once');

  // The shown Python snippet, run as shown, sends the calls.
  const snippet = await page.textContent('#snippet-python');
  assert.ok(snippet.includes(key) && snippet.includes(app.base));
  const dir = tempDir('mcpobs-e2e-');
  writeFileSync(path.join(dir, 'snippet.py'), snippet);
  const out = execFileSync(PYTHON, [path.join(HERE, 'drive_snippet.py'), path.join(dir, 'snippet.py'), String(CALLS)],
    { encoding: 'utf8', timeout: 60000 });
  assert.match(out, /exported \d+ spans/);

  // Analytics shows them; the range is in the URL.
  await Promise.all([page.waitForNavigation(), page.click('text=Go to its analytics')]);
  const calls = await page.textContent('.cards .stat:first-child .value');
  assert.ok(Number(calls.replace(/,/g, '')) >= CALLS, `calls card: ${calls}`);
  assert.ok(await page.isVisible('figure.chart svg'));
  await shot(page, '06-analytics-24h');
  await Promise.all([page.waitForNavigation(), page.click('nav[aria-label="Time range"] a[data-range="7d"]')]);
  assert.match(page.url(), /range=7d/);
  assert.equal(await page.getAttribute('a[data-range="7d"]', 'aria-current'), 'true');
  await shot(page, '07-analytics-7d');

  // Live refresh: more calls appear without a reload, and pausing stops it.
  await page.evaluate(() => sessionStorage.setItem('mcpobs-live-interval-ms', '500'));
  await page.reload();
  execFileSync(PYTHON, [path.join(HERE, 'drive_snippet.py'), path.join(dir, 'snippet.py'), '3'],
    { encoding: 'utf8', timeout: 60000 });
  await page.waitForFunction((before) => {
    const v = document.querySelector('.cards .stat:first-child .value');
    return v && Number(v.textContent.replace(/,/g, '')) > before;
  }, Number(calls.replace(/,/g, '')), { timeout: 30000 });
  assert.equal(await page.textContent('[data-live-toggle]'), 'Pause live refresh');
  await page.click('[data-live-toggle]');
  assert.equal(await page.getAttribute('[data-live-toggle]', 'aria-pressed'), 'true');
  assert.equal(await page.textContent('[data-live-toggle]'), 'Resume live refresh');
  await page.click('[data-live-toggle]');

  // Drill down: tool -> span list -> trace.
  await Promise.all([page.waitForNavigation(), page.click('section:has(h2:text("Top tools")) a:text("add")')]);
  assert.match(page.url(), /\/spans\?.*tool=add/);
  const rows = await page.locator('table.spans tbody tr').count();
  assert.ok(rows >= CALLS, `span rows: ${rows}`);
  await shot(page, '08-span-list-tool');
  await Promise.all([page.waitForNavigation(), page.click('table.spans tbody tr:first-child a:text("Trace")')]);
  assert.match(page.url(), /\/traces\/[0-9a-f]{32}#span-[0-9a-f]{16}$/);
  assert.ok(await page.locator('table.waterfall tbody tr').count() >= 1);
  assert.match(await page.textContent('.span-detail'), /tools\/call/);
  await shot(page, '09-trace');

  // Settings: generate a key through the confirmation dialog, then revoke one through its dialog.
  const settings = page.url().replace(/\/traces\/.*/, '/servers/1/settings');
  await page.goto(settings);
  await shot(page, '10-settings');
  await page.click('a:has-text("Generate new key")');
  assert.ok(await page.isVisible('dialog#new-key[open]'));
  await shot(page, '11-generate-key-dialog');
  await page.fill('#key-name', 'ci');
  await Promise.all([page.waitForNavigation(), page.click('dialog#new-key button:has-text("Generate key")')]);
  const second = (await page.textContent('#new-key')).trim();
  assert.ok(second.startsWith('mcpobs_live_') && second !== key);
  await shot(page, '12-new-key-once');
  await page.goto(settings);
  assert.ok(!(await page.content()).includes(second), 'a key must never be shown twice');
  await page.click('table tbody tr:has-text("ci") a:has-text("Revoke")');
  await shot(page, '13-revoke-dialog');
  await Promise.all([page.waitForNavigation(), page.click('dialog[open] button:has-text("Revoke key")')]);
  assert.match(await page.textContent('table tbody tr:has-text("ci")'), /revoked/);
  await shot(page, '14-key-revoked');

  // The other pages, for the record.
  for (const [name, url] of [['15-guide', '/orgs/default/servers/1/guide'], ['16-org-analytics', '/orgs/default/analytics?range=30d'],
    ['17-members', '/orgs/default/members'], ['18-tokens', '/tokens'], ['19-overview', '/orgs/default'],
    ['20-spans', '/orgs/default/spans']]) {
    await page.goto(app.base + url);
    await shot(page, name);
  }
  await page.context().close();

  // Dark mode and a phone.
  const dark = await newPage({ colorScheme: 'dark' });
  await dark.goto(`${app.base}/login`);
  await signIn(dark, 'admin', PASSWORD);
  await dark.goto(`${app.base}/orgs/default/servers/1?range=24h`);
  await shot(dark, '21-analytics-dark');
  await dark.context().close();
  const phone = await newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(`${app.base}/login`);
  await signIn(phone, 'admin', PASSWORD);
  await phone.goto(`${app.base}/orgs/default/servers/1`);
  await shot(phone, '22-analytics-phone');
  await phone.context().close();

  assert.deepEqual(cspErrors, [], 'no Content-Security-Policy violations');
});

test('a member of another organization is refused', async () => {
  const page = await newPage();
  await page.goto(`${app.base}/login`);
  await signIn(page, 'eve', 'eve-password-1');
  const res = await page.goto(`${app.base}/orgs/default/servers/1/settings`);
  assert.equal(res.status(), 404);
  assert.match(await page.textContent('[role=alert]'), /organization not found/);
  await shot(page, '23-other-org-refused');
  await page.context().close();
});

test('without script, New MCP server is a page of its own', async () => {
  const page = await newPage({ javaScriptEnabled: false });
  await page.goto(`${app.base}/login`);
  await signIn(page, 'admin', PASSWORD);
  await page.goto(`${app.base}/orgs/default`);
  await Promise.all([page.waitForNavigation(), page.click('.page-head a:has-text("New MCP server")')]);
  assert.equal(new URL(page.url()).pathname, '/orgs/default/servers/new');
  await shot(page, '24-new-server-no-script');
  await page.fill('#name', 'offline');
  await Promise.all([page.waitForNavigation(), page.click('main button:has-text("Create server")')]);
  assert.match((await page.textContent('#new-key')).trim(), /^mcpobs_live_[A-Za-z0-9]{40}$/);
  await page.context().close();
});

test('a user changes their own password and their other sessions end', async () => {
  const elsewhere = await newPage();
  await elsewhere.goto(`${app.base}/login`);
  await signIn(elsewhere, 'eve', 'eve-password-1');
  const page = await newPage();
  await page.goto(`${app.base}/login`);
  await signIn(page, 'eve', 'eve-password-1');
  // From the user's name in the header.
  await Promise.all([page.waitForNavigation(), page.click('header a.account')]);
  assert.equal(new URL(page.url()).pathname, '/account');
  await page.fill('#current-password', 'not-my-password');
  await page.fill('#new-password', 'eve-password-2');
  await page.fill('#confirm-password', 'eve-password-2');
  await Promise.all([page.waitForNavigation(), page.click('main button:has-text("Change password")')]);
  assert.match(await page.textContent('[role=alert]'), /current password is not correct/);
  await shot(page, '25-change-password-error');
  await page.fill('#current-password', 'eve-password-1');
  await page.fill('#new-password', 'eve-password-2');
  await page.fill('#confirm-password', 'eve-password-2');
  await Promise.all([page.waitForNavigation(), page.click('main button:has-text("Change password")')]);
  assert.match(page.url(), /\/account\?password=changed$/);
  assert.match(await page.textContent('[role=status]'), /password was changed/);
  await shot(page, '26-password-changed');
  // This session stays; the other one is signed out.
  await page.goto(`${app.base}/tokens`);
  assert.equal(new URL(page.url()).pathname, '/tokens');
  await elsewhere.goto(`${app.base}/tokens`);
  assert.equal(new URL(elsewhere.url()).pathname, '/login');
  await signIn(elsewhere, 'eve', 'eve-password-2');
  assert.equal(new URL(elsewhere.url()).pathname, '/tokens');
  await page.context().close();
  await elsewhere.context().close();

  // The add-member form on a phone, for the record.
  const phone = await newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(`${app.base}/login`);
  await signIn(phone, 'admin', PASSWORD);
  await phone.goto(`${app.base}/orgs/default/members`);
  const form = await phone.locator('form.compact').boundingBox();
  assert.ok(form.width <= 390, `the form fits the phone: ${form.width}`);
  await shot(phone, '27-members-phone');
  await phone.context().close();
  assert.deepEqual(cspErrors, [], 'no Content-Security-Policy violations');
});
