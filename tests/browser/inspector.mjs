// Drives the radioctl web inspector in Debian's chromium, headless, as an operator would: run by
// tests/tests/it/inspector.rs, which starts Redis, `radioctl serve` and (when this script asks, on
// stdout) a real worker on the tiny pack. Every check is on what the page shows.
//
// Environment: INSPECTOR_URL, RADIOCTL (the binary, with REDIS_URL and RADIO_PREFIX set for it),
// FAILED_JOB (a job the test failed before starting), SCREENSHOTS (a folder), CHROMIUM (optional).
//
// Protocol: lines `STEP …` say where it is; `START_WORKER` asks the test to start the worker and waits
// for one line on stdin; the last line is `RESULT {json}`. Any failure exits non-zero with the reason.

import { execFileSync } from 'node:child_process';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const env = process.env;
const base = env.INSPECTOR_URL;
const stdin = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));

function fail(message) {
  throw new Error(message);
}
function check(condition, message) {
  if (!condition) fail(message);
}
function step(name) {
  console.log(`STEP ${name}`);
}
function radioctl(...args) {
  return execFileSync(env.RADIOCTL, args, { env, encoding: 'utf8' }).trim();
}

/** Records, in the page, every distinct progress text the job page shows from now on. */
async function watchProgress(page) {
  await page.evaluate(() => {
    window.__sameDocument = true;
    window.__progress = [];
    const seen = () => {
      const text = document.querySelector('#progress-box .progress-text')?.textContent;
      if (text && window.__progress.at(-1) !== text) window.__progress.push(text);
    };
    new MutationObserver(seen).observe(document.querySelector('#main'), {
      subtree: true,
      childList: true,
      characterData: true,
    });
  });
}

/** Clicks a button, then confirms in the page's dialog. */
async function confirmClick(page, label) {
  await page.getByRole('button', { name: label }).click();
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-yes').click();
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
});
const result = {};
const pageErrors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.on('page', (p) => p.on('pageerror', (e) => pageErrors.push(`${p.url()}: ${e.message}`)));
  context.setDefaultTimeout(20_000);

  step('the overview shows the queue');
  const overview = await context.newPage();
  await overview.goto(`${base}/`);
  await overview.locator('#streams tr[data-stream="interactive"]').waitFor();
  await overview.locator('#streams tr[data-stream="radio"]').waitFor();
  const deadShown = (await overview.locator('#figure-dead .value').textContent()).trim();
  check(deadShown === '1', `the overview shows ${deadShown} dead letters, expected the 1 failed job`);
  check((await overview.locator('#workers').textContent()).includes('No live workers'),
    'the overview should say no worker is live before one starts');
  await overview.locator('#live.on').waitFor();

  step('jobs enqueued with radioctl appear in the list without a reload');
  const list = await context.newPage();
  await list.goto(`${base}/jobs`);
  await list.locator('#live.on').waitFor();
  await list.evaluate(() => { window.__sameDocument = true; });
  const live = radioctl('enqueue', '--caption', 'inspector live job, warm pads', '--duration', '30', '--seed', '7');
  const doomed = radioctl('enqueue', '--caption', 'inspector job to cancel', '--duration', '30');
  await list.locator(`tr[data-job="${live}"]`).waitFor();
  await list.locator(`tr[data-job="${doomed}"]`).waitFor();
  check(await list.evaluate(() => window.__sameDocument === true), 'the jobs list reloaded to show new jobs');
  result.live = live;
  result.cancelled = doomed;

  step('the live job waits; its page follows it');
  const livePage = await context.newPage();
  await livePage.goto(`${base}/jobs/${live}`);
  await livePage.locator('#job-state .badge.queued').waitFor();
  await livePage.locator('#live.on').waitFor();
  await watchProgress(livePage);

  step('cancel through the button');
  const doomedPage = await context.newPage();
  await doomedPage.goto(`${base}/jobs/${doomed}`);
  await confirmClick(doomedPage, 'Cancel job');
  await doomedPage.locator('#job-state .badge.cancelled').waitFor();

  step('a caption with markup is shown as text, and retry works through the button');
  const failedPage = await context.newPage();
  await failedPage.goto(`${base}/jobs/${env.FAILED_JOB}`);
  await failedPage.locator('#job-state .badge.failed').waitFor();
  const caption = await failedPage.locator('#song dd').first().textContent();
  check(caption.includes('<script>window.__xss = 1</script>'), `the caption is not shown as typed: ${caption}`);
  const error = await failedPage.locator('#job-error').textContent();
  check(error.includes('<img src=x onerror="window.__xss = 2">'), `the error is not shown as text: ${error}`);
  check(await failedPage.evaluate(() => window.__xss === undefined), 'markup from a job ran in the page');
  check(await failedPage.locator('#song script, #job-error img').count() === 0, 'markup from a job became elements');
  await failedPage.locator('#live.on').waitFor();
  await confirmClick(failedPage, 'Retry job');
  await failedPage.locator('#job-state .badge.queued').waitFor();
  result.retried = env.FAILED_JOB;

  step('a worker starts');
  console.log('START_WORKER');
  await nextLine();

  step('the live job runs: its progress moves without a reload');
  await livePage.locator('#job-state .badge.succeeded').waitFor({ timeout: 120_000 });
  const progress = await livePage.evaluate(() => window.__progress);
  check(new Set(progress).size >= 2, `the job page showed too little progress: ${JSON.stringify(progress)}`);
  check(await livePage.evaluate(() => window.__sameDocument === true), 'the job page reloaded');
  result.progress_seen = progress;

  step('its page plays the audio');
  await livePage.locator('#audio audio').waitFor();
  const audio = await livePage.evaluate(() => new Promise((resolve) => {
    const el = document.querySelector('#audio audio');
    const done = () => resolve({ duration: el.duration, readyState: el.readyState });
    el.addEventListener('error', () => resolve({ error: el.error ? el.error.message || `code ${el.error.code}` : 'unknown' }), { once: true });
    if (el.readyState >= 3) {
      done();
      return;
    }
    el.addEventListener('canplay', done, { once: true });
    el.preload = 'auto';
    el.load();
  }));
  check(!audio.error, `the audio element failed: ${audio.error}`);
  check(audio.duration > 0 && Number.isFinite(audio.duration), `the audio has no duration: ${JSON.stringify(audio)}`);
  result.audio_duration_s = audio.duration;

  step('the retried job runs to the end, shown live');
  await failedPage.locator('#job-state .badge.succeeded').waitFor({ timeout: 120_000 });

  step('the overview shows the worker and the outcomes');
  await overview.locator('#workers tr[data-worker]').waitFor();
  await overview.waitForFunction(() => /2 succeeded/.test(document.querySelector('#outcomes')?.textContent || ''));
  check((await overview.locator('#outcomes').textContent()).includes('1 cancelled'), 'the outcomes miss the cancelled job');
  check((await overview.locator('#figure-dead .value').textContent()).trim() === '0', 'the retried job is still a dead letter');

  if (env.SCREENSHOTS) {
    await overview.screenshot({ path: `${env.SCREENSHOTS}/inspector-overview.png`, fullPage: true });
    await livePage.screenshot({ path: `${env.SCREENSHOTS}/inspector-job.png`, fullPage: true });
  }
  check(pageErrors.length === 0, `scripts failed in the pages: ${pageErrors.join('; ')}`);
  console.log(`RESULT ${JSON.stringify(result)}`);
} finally {
  await browser.close();
  stdin.close();
}
