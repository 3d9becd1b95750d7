// clickstream browser tracker, served by the ingest API at /tracker.js. Add to every page:
//   <script src="https://collect.example/tracker.js" data-write-key="KEY" async></script>
// Sends Segment Tracking API calls: a page view on load and on each history API navigation, an
// "Element Clicked" track call for clicks on elements with data-clickstream="label", and an
// "Outbound Link Clicked" one for links to other sites. Options, as attributes of the tag:
//   data-api-host="https://..."  where to send (default: where this script was loaded from)
//   data-storage="memory"        keep the ids in memory only: nothing in localStorage, no cookies
//                                (so each page load is a new visitor and a new session)
//   data-auto-page="false"       no automatic page views: call clickstream.page() yourself
// The page can call clickstream.page(name, props), .track(event, props), .identify(userId, traits)
// and .reset(). With Do-Not-Track or Global Privacy Control on, nothing is stored or sent.
(() => {
  'use strict';
  const VERSION = '1.0.0';
  const SESSION_MS = 30 * 60 * 1000;
  const script = document.currentScript || document.querySelector('script[data-write-key]');
  // Included twice: the first copy does the tracking.
  if (!script || (window.clickstream && window.clickstream.version)) return;
  const opt = script.dataset;
  const noop = () => {};
  const optedOut = navigator.doNotTrack === '1' || navigator.doNotTrack === 'yes' ||
    window.doNotTrack === '1' || navigator.globalPrivacyControl === true;
  if (optedOut || !opt.writeKey) {
    if (!opt.writeKey) console.warn('clickstream: the script tag has no data-write-key');
    // The page's own calls must keep working for visitors who opted out.
    window.clickstream = {version: VERSION, page: noop, track: noop, identify: noop, reset: noop};
    return;
  }
  const base = (opt.apiHost || new URL('.', script.src).href).replace(/\/*$/, '/');

  // Values live in memory, mirrored to localStorage unless memory-only; storage can be blocked
  // (privacy settings, sandboxed frames) and then throws, which leaves memory alone.
  const persist = opt.storage !== 'memory';
  const memory = {};
  const get = (key) => {
    if (persist) {
      try {
        const value = localStorage.getItem('clickstream.' + key);
        if (value !== null) return value;
      } catch (e) {}
    }
    return memory[key];
  };
  const set = (key, value) => {
    memory[key] = value;
    if (persist) {
      try {
        if (value == null) localStorage.removeItem('clickstream.' + key);
        else localStorage.setItem('clickstream.' + key, value);
      } catch (e) {}
    }
    return value;
  };

  // A version 4 UUID; crypto.randomUUID would need a secure context (https).
  const uuid = () => ([1e7] + -1e3 + -4e3 + -8e3 + -1e11).replace(/[018]/g, (c) =>
    (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));
  const anonymousId = () => get('anonymousId') || set('anonymousId', uuid());
  // A session ends after 30 minutes without an event; kept with its last activity so tabs share it.
  const sessionId = () => {
    let session;
    try {
      session = JSON.parse(get('session'));
    } catch (e) {}
    const now = Date.now();
    if (!session || !session.id || !(now - session.t <= SESSION_MS)) session = {id: uuid()};
    session.t = now;
    set('session', JSON.stringify(session));
    return session.id;
  };

  const here = () => location.href.replace(/#.*/, '');
  // The first page view's referrer is the document's; after a history API navigation it is the
  // previous page view's URL, which is what the visitor came from.
  let current = null;
  let referrer = document.referrer;
  const pageInfo = () => ({
    url: here(), path: location.pathname, referrer, title: document.title, search: location.search,
  });

  const send = (type, fields) => {
    const now = new Date().toISOString();
    const call = Object.assign({
      type, anonymousId: anonymousId(), userId: get('userId'), messageId: uuid(),
      timestamp: now, sentAt: now, writeKey: opt.writeKey,
      context: {
        page: pageInfo(), userAgent: navigator.userAgent, locale: navigator.language,
        library: {name: 'clickstream-tracker', version: VERSION}, sessionId: sessionId(),
      },
    }, fields);
    const url = base + 'v1/' + type;
    const body = JSON.stringify(call);
    // A string body goes as text/plain: a CORS simple request, without a preflight. A beacon is
    // delivered even when the page is being left (outbound links); it fails only when queueing fails.
    if (!(navigator.sendBeacon && navigator.sendBeacon(url, body))) {
      fetch(url, {method: 'POST', body, keepalive: true, credentials: 'omit',
        headers: {'Content-Type': 'text/plain'}}).catch(noop);
    }
  };

  const api = {
    version: VERSION,
    page(name, properties) {
      if (current !== null) referrer = current;
      current = here();
      send('page', {name, properties: Object.assign(pageInfo(), properties)});
    },
    track(event, properties) {
      send('track', {event, properties: properties || {}});
    },
    identify(userId, traits) {
      if (userId != null) set('userId', String(userId));
      send('identify', {traits: traits || {}});
    },
    reset() {
      ['userId', 'anonymousId', 'session'].forEach((key) => set(key, null));
    },
  };
  window.clickstream = api;

  if (opt.autoPage !== 'false') {
    // Single-page apps navigate with the history API; replaceState with an unchanged URL (scroll
    // state, say) and changes of the hash alone are not page views.
    const navigated = () => {
      if (here() !== current) api.page();
    };
    ['pushState', 'replaceState'].forEach((method) => {
      const original = history[method];
      history[method] = function () {
        const result = original.apply(this, arguments);
        navigated();
        return result;
      };
    });
    addEventListener('popstate', navigated);
    api.page();
  }

  const text = (el) => (el.innerText || el.textContent || '').trim().slice(0, 100);
  // Capturing, so that a handler that stops propagation (a router's link) hides no click.
  const clicked = (e) => {
    // Of the other buttons, only the middle one follows a link (in a new tab).
    if (e.type === 'auxclick' && e.button !== 1) return;
    const target = e.target instanceof Element ? e.target : null;
    const marked = target && target.closest('[data-clickstream]');
    if (marked) {
      api.track('Element Clicked', {
        element: marked.getAttribute('data-clickstream'), text: text(marked),
        tag: marked.tagName.toLowerCase(), id: marked.id || undefined,
        href: typeof marked.href === 'string' ? marked.href : undefined,
      });
    }
    const link = target && target.closest('a[href]');
    if (link && /^https?:$/.test(link.protocol) && link.hostname !== location.hostname) {
      api.track('Outbound Link Clicked', {href: link.href, text: text(link)});
    }
  };
  document.addEventListener('click', clicked, true);
  document.addEventListener('auxclick', clicked, true);
})();
