// Attachments in both UIs, in real headless Chromium against the real roomcast-local binary: a
// visitor pastes a screenshot and drops a PDF; the agent sees the thumbnail (opening full size)
// and downloads the PDF byte for byte; an SVG carrying a script is only ever a download (no
// inline <img>/<object>, nothing of it runs); a visitor of another conversation is refused the
// link (403); a file over the limit and a type not allowed are said in words before any upload,
// and the server's refusals (its lower limit, the daily quota) too; a cancel aborts the upload;
// axe-core finds no violation with files in either UI.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { Server, axeViolations, launch, screenshotPath, until } from './harness.js';


function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A real `w`×`h` PNG (a colour gradient), so the server sniffs it and reads its size. */
function png(w, h) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rows.set([(x * 255) / w, (y * 255) / h, 128], y * (w * 3 + 1) + 1 + x * 3);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

const PNG = png(64, 40);
// A small valid PDF, with binary bytes so a byte-exact download is meaningful.
const PDF = Buffer.concat([
  Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n', 'latin1'),
  Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 37) & 255)),
  Buffer.from('\n%%EOF\n'),
]);
// Would record that it ran in the viewer's origin, were it ever rendered there.
const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>localStorage.setItem("svg-ran","1");parent.postMessage("svg-ran","*")</script><rect width="10" height="10"/></svg>');

/** Hands `files` ({name, type, b64}) to the widget as a paste into the composer or a drop on the conversation. */
function give(page, how, files) {
  return page.evaluate(
    ({ how, files }) => {
      const root = document.querySelector('#roomcast-widget').shadowRoot;
      const dt = new DataTransfer();
      for (const f of files) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
      if (how === 'paste') return root.querySelector('textarea').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      const log = root.querySelector('.log');
      log.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      return log.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    },
    { how, files },
  );
}

const file = (name, type, bytes) => ({ name, type, b64: bytes.toString('base64') });

/** The composer tray's rows in the widget. */
const trayRows = (page) =>
  page.evaluate(() =>
    [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('.tray li')].map((li) => ({
      name: li.querySelector('.fname').textContent,
      state: li.dataset.state,
      error: li.querySelector('.err')?.textContent ?? null,
      progress: Boolean(li.querySelector('progress')),
    })),
  );

/** The size as the UIs write it. */
const kb = (bytes) => `${Math.round((bytes / 1024) * 10) / 10} KB`;

test('files in the widget and the console: thumbnails, byte-identical downloads, SVG never rendered, non-members refused, errors in words', { timeout: 180000 }, async (t) => {
  const server = await Server.start();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const agentCtx = await browser.newContext({ viewport: { width: 1200, height: 760 }, acceptDownloads: true });
  const visitorCtx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const agent = await agentCtx.newPage();
  const visitor = await visitorCtx.newPage();
  for (const [name, page] of [['agent', agent], ['visitor', visitor]]) page.on('pageerror', (e) => console.error(`[${name} page error]`, e));
  // The agent is away: no conversation is auto-assigned (protocol.md §15), so it waits until accepted.
  await agent.addInitScript(() => localStorage.setItem('roomcast:console:ann:availability', JSON.stringify({ status: 'away', capacity: 3 })));
  await agent.goto(`${server.base}/console?agent=ann`);
  await until('the console to connect', () => agent.evaluate(() => window.roomcastConsole.client.state === 'connected'));
  await visitor.goto(`${server.base}/demo`);
  await until('the widget to connect', () => visitor.evaluate(() => window.roomcastWidget.client.state === 'connected'));
  const room = await visitor.evaluate(() => window.roomcastWidget.room);
  await visitor.click('#roomcast-widget >> .launcher');

  // Over the limit and of a type not allowed: said at once, nothing uploaded.
  const uploads = [];
  visitor.on('request', (r) => r.url().includes('/uploads/') && uploads.push(r.url()));
  await visitor.setInputFiles('#roomcast-widget >> input[type=file]', [
    { name: 'huge.pdf', mimeType: 'application/pdf', buffer: Buffer.alloc(12 * 1024 * 1024, 1) },
    { name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<p>hi</p>') },
  ]);
  const refused = await until('the refusals in the tray', async () => {
    const rows = await trayRows(visitor);
    return rows.length === 2 && rows.every((r) => r.state === 'error') && rows;
  });
  assert.equal(refused[0].error, 'huge.pdf is too large (12 MB; the limit is 10 MB).');
  assert.equal(refused[1].error, "page.html: files of this type can't be sent.");
  await visitor.screenshot({ path: screenshotPath('widget-file-errors.png') });
  assert.deepEqual(await axeViolations(visitor), [], 'axe-core: the widget with refused files');
  for (const name of ['huge.pdf', 'page.html']) await visitor.click(`#roomcast-widget >> button[aria-label="Remove ${name}"]`);
  assert.deepEqual(await trayRows(visitor), []);

  // Cancel: an upload held on the wire shows its progress bar; cancelling aborts the request.
  let held = null;
  await visitor.route('**/uploads/**', (route) => {
    held = route;
  });
  const aborted = visitor.waitForEvent('requestfailed', (r) => r.url().includes('/uploads/'));
  await give(visitor, 'drop', [file('slow.pdf', 'application/pdf', PDF)]);
  await until('the held upload', () => held);
  assert.deepEqual(await trayRows(visitor), [{ name: 'slow.pdf', state: 'uploading', error: null, progress: true }]);
  await visitor.click('#roomcast-widget >> button[aria-label="Cancel upload of slow.pdf"]');
  await aborted;
  assert.deepEqual(await trayRows(visitor), [], 'the cancelled file leaves the tray');
  await visitor.unroute('**/uploads/**');
  assert.equal(uploads.length, 1, 'only the cancelled upload went out');

  // A pasted screenshot and a dropped PDF, sent with a line of text: Enter while they upload
  // sends once they are done.
  const uploading = [];
  await visitor.route('**/uploads/**', (route) => uploading.push(route));
  await give(visitor, 'paste', [file('screenshot.png', 'image/png', PNG)]);
  await give(visitor, 'drop', [file('invoice.pdf', 'application/pdf', PDF)]);
  await visitor.fill('#roomcast-widget >> textarea', 'Here is the error and my invoice');
  await until('both uploads on the wire', () => uploading.length === 2);
  await visitor.press('#roomcast-widget >> textarea', 'Enter');
  const send = visitor.locator('#roomcast-widget >> button.send');
  assert.equal(await send.textContent(), 'Uploading…');
  assert.ok(await send.isDisabled());
  assert.equal((await server.history(room)).length, 0, 'nothing sent before the files are up');
  for (const route of uploading) await route.continue();
  await visitor.unroute('**/uploads/**');
  await until('the message stored with its files in the widget', () =>
    visitor.evaluate(() => {
      const li = [...document.querySelector('#roomcast-widget').shadowRoot.querySelectorAll('li.msg.me')].find((l) => l.dataset.status !== 'pending');
      return Boolean(li?.querySelector('.thumb img[src]')?.naturalWidth && li.querySelector('a.file[href]'));
    }),
  );
  const stored = await server.history(room);
  const sent = stored.find((m) => m.attachments?.length);
  assert.equal(sent.body, 'Here is the error and my invoice');
  assert.deepEqual(
    sent.attachments.map(({ id, ...a }) => a),
    [
      { name: 'screenshot.png', size: PNG.length, type: 'image/png', width: 64, height: 40 },
      { name: 'invoice.pdf', size: PDF.length, type: 'application/pdf' },
    ],
  );

  // The SVG: sent as a file.
  await visitor.setInputFiles('#roomcast-widget >> input[type=file]', [{ name: 'logo.svg', mimeType: 'image/svg+xml', buffer: SVG }]);
  await until('the SVG upload', async () => (await trayRows(visitor)).some((r) => r.state === 'ready'));
  await visitor.press('#roomcast-widget >> textarea', 'Enter');
  await until('the SVG message stored', async () => (await server.history(room)).some((m) => m.attachments?.[0]?.name === 'logo.svg'));
  await visitor.screenshot({ path: screenshotPath('widget-files.png') });
  assert.deepEqual(await axeViolations(visitor), [], 'axe-core: the widget with files');

  // The agent: the thumbnail at its size, opening full size; the PDF downloads byte for byte.
  await agent.locator(`#queue li[data-room="${room}"] button.accept`).click();
  const pane = agent.locator(`.pane[data-room="${room}"]`);
  const thumb = pane.locator('a.thumb img');
  await until('the thumbnail at the agent', () => thumb.evaluate((img) => img.complete && img.naturalWidth === 64 && img.naturalHeight === 40));
  assert.deepEqual(await thumb.evaluate((img) => [img.getAttribute('width'), img.getAttribute('height'), img.alt]), ['64', '40', 'screenshot.png'], 'space reserved from the message');
  const [full] = await Promise.all([agentCtx.waitForEvent('page'), pane.locator('a.thumb').click()]);
  await full.waitForLoadState();
  assert.match(full.url(), /\/files\//);
  assert.equal(await full.evaluate(() => document.images[0]?.naturalWidth), 64, 'full size opens in a new tab');
  const fullBytes = await fetch(full.url());
  assert.equal(fullBytes.headers.get('content-type'), 'image/png');
  assert.ok(Buffer.from(await fullBytes.arrayBuffer()).equals(PNG), 'full size is the uploaded image');
  await full.close();

  const pdfChip = pane.locator('a.file', { hasText: 'invoice.pdf' });
  await until('the PDF link', () => pdfChip.getAttribute('href'));
  assert.equal(await pdfChip.getAttribute('download'), 'invoice.pdf');
  assert.equal(await pdfChip.getAttribute('rel'), 'noopener noreferrer');
  assert.equal(await pdfChip.textContent(), `invoice.pdf${kb(PDF.length)}`);
  const [pdfDownload] = await Promise.all([agent.waitForEvent('download'), pdfChip.click()]);
  assert.equal(pdfDownload.suggestedFilename(), 'invoice.pdf');
  assert.ok(readFileSync(await pdfDownload.path()).equals(PDF), 'the agent downloads the PDF byte for byte');

  // The SVG is only a download: no element shows it, its script never runs.
  const svgChip = pane.locator('a.file', { hasText: 'logo.svg' });
  await until('the SVG link', () => svgChip.getAttribute('href'));
  const svgHref = await svgChip.getAttribute('href');
  assert.deepEqual(
    await agent.evaluate(() => [...document.querySelectorAll('img, object, embed, iframe, svg, image, use')].map((e) => e.outerHTML).filter((html) => !/screenshot\.png/.test(html))),
    [],
    'nothing renders the SVG inline',
  );
  let opened = 0;
  agentCtx.on('page', () => opened++);
  const messages = [];
  await agent.exposeFunction('svgMessage', (m) => messages.push(m));
  await agent.evaluate(() => addEventListener('message', (e) => window.svgMessage(String(e.data))));
  const [svgDownload] = await Promise.all([agent.waitForEvent('download'), svgChip.click()]);
  assert.ok(readFileSync(await svgDownload.path()).equals(SVG), 'the SVG downloads as uploaded');
  const served = await fetch(svgHref);
  assert.match(served.headers.get('content-disposition') || '', /^attachment/);
  assert.equal(served.headers.get('x-content-type-options'), 'nosniff');
  assert.notEqual(served.headers.get('content-type'), 'image/svg+xml');
  assert.equal(opened, 0, 'no page opened for the SVG');
  assert.deepEqual(messages, []);
  assert.equal(await agent.evaluate(() => localStorage.getItem('svg-ran')), null, "the SVG's script never ran in the console's origin");
  assert.equal(await visitor.evaluate(() => localStorage.getItem('svg-ran')), null, "nor in the widget's page");
  await agent.screenshot({ path: screenshotPath('console-files.png') });
  assert.deepEqual(await axeViolations(agent), [], 'axe-core: the console with files');

  // Another visitor (another conversation) is refused the link.
  const other = await (await browser.newContext()).newPage();
  await other.goto(`${server.base}/demo`);
  await until('the other widget to connect', () => other.evaluate(() => window.roomcastWidget.client.state === 'connected'));
  const pdfId = sent.attachments[1].id;
  const refusal = await other.evaluate(([room, id]) => window.roomcastWidget.client.attachmentLink(room, id).then(() => null, (e) => ({ code: e.code, status: e.status })), [room, pdfId]);
  assert.deepEqual(refusal, { code: 'FORBIDDEN', status: 403 });
});

test("the server's refusals are said in words: its own lower size limit, the daily quota", { timeout: 60000 }, async (t) => {
  const server = await Server.start([], { ROOMCAST_ATTACHMENT_MAX_BYTES: '2000', ROOMCAST_UPLOADS_PER_USER_DAY: '1' });
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const visitor = await (await browser.newContext()).newPage();
  visitor.on('pageerror', (e) => console.error('[visitor page error]', e));
  await visitor.goto(`${server.base}/demo`);
  await until('the widget to connect', () => visitor.evaluate(() => window.roomcastWidget.client.state === 'connected'));
  await visitor.click('#roomcast-widget >> .launcher');
  await give(visitor, 'drop', [file('invoice.pdf', 'application/pdf', PDF)]);
  const [large] = await until('the size refusal', async () => {
    const rows = await trayRows(visitor);
    return rows[0]?.state === 'error' && rows;
  });
  assert.equal(large.error, `invoice.pdf is too large for this chat (${kb(PDF.length)}).`);
  const small = png(8, 6);
  await give(visitor, 'paste', [file('one.png', 'image/png', small)]);
  await give(visitor, 'paste', [file('two.png', 'image/png', small)]);
  const rows = await until('the quota refusal', async () => {
    const rows = await trayRows(visitor);
    return rows.length === 3 && rows.every((r) => r.state !== 'uploading') && rows;
  });
  assert.deepEqual(
    rows.slice(1).map((r) => [r.name, r.state, r.error]),
    [
      ['one.png', 'ready', null],
      ['two.png', 'error', 'Daily upload limit reached: two.png was not sent. Try again tomorrow.'],
    ],
  );
});
