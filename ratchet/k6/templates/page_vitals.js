// Web vitals of a target's pages: k6's browser module drives Chromium through each page, a fresh browser
// context per visit (a first view: nothing cached), and reports FCP, LCP, CLS, INP and TTFB per URL, with every
// request the page made. Pages come from RATCHET_PAGES (a JSON list of absolute URLs). RATCHET_EMULATION, when
// set, is the device to be (ratchet/k6/page_profiles.py): its screen, user agent, network and CPU.
import { browser } from 'k6/browser';
import { Trend } from 'k6/metrics';

const pages = JSON.parse(__ENV.RATCHET_PAGES);
const visits = parseInt(__ENV.RATCHET_VISITS || '3', 10);
const emulation = __ENV.RATCHET_EMULATION ? JSON.parse(__ENV.RATCHET_EMULATION) : null;

export const options = {
  scenarios: {
    pages: {
      executor: 'shared-iterations',
      vus: 1,
      iterations: pages.length * visits,
      maxDuration: __ENV.RATCHET_MAX_DURATION || '120s',
      options: { browser: { type: 'chromium' } },
    },
  },
};

// LCP and FCP as the page itself recorded them, returned by the visit's own evaluate: k6's web vitals come
// from a library in the page that reports them as the page is left, and a visit closed under a busy CPU can
// lose them (grafana/xk6-browser#914; a CI run lost two of three LCPs of a visit set).
const lcp = new Trend('ratchet_lcp', true);
const fcp = new Trend('ratchet_fcp', true);

function contextOptions() {
  if (!emulation) {
    return {};
  }
  return {
    viewport: { width: emulation.width, height: emulation.height },
    deviceScaleFactor: emulation.device_scale_factor,
    isMobile: emulation.mobile,
    hasTouch: emulation.mobile,
    userAgent: emulation.user_agent,
  };
}

export default async function () {
  const url = pages[__ITER % pages.length];
  const context = await browser.newContext(contextOptions());
  const page = await context.newPage();
  try {
    if (emulation) {
      await page.throttleNetwork({
        latency: emulation.latency_ms,
        download: emulation.download_bytes_s,
        upload: emulation.upload_bytes_s,
      });
      await page.throttleCPU({ rate: emulation.cpu_slowdown });
    }
    await page.goto(url, { waitUntil: 'load' });
    // An input ends LCP's observation: wait until the browser has recorded an LCP candidate (at most 5 s, for
    // a page with nothing contentful), then two frames more for a larger one already loaded but not yet
    // painted; the last candidate is the page's LCP (its start time: render time, else load time).
    const painted = await page.evaluate(() => new Promise((resolve) => {
      let latest = null;
      const settle = () => {
        const first = performance.getEntriesByName('first-contentful-paint')[0];
        resolve({ lcp: latest, fcp: first ? first.startTime : null });
      };
      new PerformanceObserver((list) => {
        const seen = latest !== null;
        latest = list.getEntries().at(-1).startTime;
        if (!seen) requestAnimationFrame(() => requestAnimationFrame(settle));
      }).observe({ type: 'largest-contentful-paint', buffered: true });
      setTimeout(settle, 5000);
    }));
    if (painted.lcp !== null) lcp.add(painted.lcp, { url });
    if (painted.fcp !== null) fcp.add(painted.fcp, { url });
    // An interaction, so that INP has something to measure: a click in the page's corner, which follows no
    // link; then the page is closed, which makes the browser report CLS and INP.
    await page.mouse.click(2, 2);
  } finally {
    await page.close();
    await context.close();
  }
}
