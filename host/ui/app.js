// The shell: sign-in, the signed-in user, and the hash router that puts one
// page (a "view") at a time into <main>. Each view gets a context whose
// AbortSignal fires when the user navigates away, so a slow answer never
// draws over the next page and keyboard shortcuts are removed with the page.

import { api, storedToken, storeToken } from './api.js';
import { h, replace, errorBox, labelled, parseHash } from './dom.js';
import { renderQueueList, renderQueue } from './queues.js';
import { renderExperiments, renderComparison } from './experiments.js';
import { renderDatasets, renderDataset } from './datasets.js';

const view = document.getElementById('view');
const statusRegion = document.getElementById('status');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const whoName = document.getElementById('who-name');
const signOutButton = document.getElementById('sign-out');

let user = null;
let current = null;

// Status messages go to one polite live region, so screen readers hear them.
function announce(message) {
  statusRegion.textContent = message;
}

// The pages each role can use (the API refuses the others); an admin sees all.
const SECTIONS_BY_ROLE = {
  annotator: ['queues', 'datasets'],
  engineer: ['queues', 'experiments', 'datasets'],
  publisher: ['datasets'],
  ingest: [],
};
const ALL_SECTIONS = ['queues', 'experiments', 'datasets'];

function sections() {
  return (user && SECTIONS_BY_ROLE[user.role]) || ALL_SECTIONS;
}

function defaultHash() {
  if (user && user.role === 'annotator') return '#/queues';
  return sections().includes('experiments') ? '#/experiments' : `#/${sections()[0] || 'datasets'}`;
}

async function route() {
  if (!user) return;
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const {segments, query} = parseHash(location.hash);
  const [section, ...rest] = segments;
  if (!section) {
    history.replaceState(null, '', defaultHash());
    return route();
  }
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const context = {
    signal: controller.signal,
    user,
    announce,
    title: (text) => { document.title = `${text} · Assay`; },
  };
  const focusedBefore = document.activeElement;
  try {
    if (section === 'queues' && rest.length === 0) await renderQueueList(view, context);
    else if (section === 'queues') await renderQueue(view, context, rest[0]);
    else if (section === 'experiments' && rest[0] === 'compare') await renderComparison(view, context, query);
    else if (section === 'experiments') await renderExperiments(view, context, query.get('dataset') || '');
    else if (section === 'datasets' && rest.length === 0) await renderDatasets(view, context);
    else if (section === 'datasets') await renderDataset(view, context, rest[0], query);
    else {
      context.title('Not found');
      replace(view, h('h1', {tabindex: '-1'}, 'Page not found'),
        h('p', {}, 'There is no page at this address. ', h('a', {href: defaultHash()}, 'Go to the start page.')));
    }
  } catch (error) {
    if (error.name === 'AbortError' || controller.signal.aborted) return;
    if (error.status === 401) {
      // The token was revoked or the server's store was replaced: sign in again.
      storeToken('');
      user = null;
      showSignIn(new Error('Your session token was refused; sign in again.'));
      return;
    }
    replace(view, h('h1', {tabindex: '-1'}, 'Could not load this page'), errorBox(error));
  }
  if (controller.signal.aborted) return;
  // After a navigation, move focus to the new page's heading unless the page
  // itself put it somewhere (the review page focuses the reference editor).
  const active = document.activeElement;
  if (active === document.body || active === focusedBefore || active === view || nav.contains(active)) {
    const heading = view.querySelector('h1');
    if (heading) {
      if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
      heading.focus({preventScroll: true});
    }
  }
}

function showUser(developmentMode) {
  whoName.textContent = developmentMode
    ? `${user.name} (${user.role}, development mode)`
    : `${user.name} (${user.role})`;
  signOutButton.hidden = developmentMode;
  for (const link of nav.querySelectorAll('a')) link.parentElement.hidden = !sections().includes(link.dataset.section);
  who.hidden = false;
  nav.hidden = false;
}

function showSignIn(problem) {
  if (current) current.abort();
  current = null;
  nav.hidden = true;
  who.hidden = true;
  document.title = 'Sign in · Assay';
  const input = h('input', {
    type: 'password', id: 'token-input', name: 'token', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'token-help',
  });
  const problemBox = h('div', {id: 'sign-in-problem'});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Sign in');
  const form = h('form', {class: 'card sign-in', 'aria-labelledby': 'sign-in-title'},
    h('h1', {id: 'sign-in-title', tabindex: '-1'}, 'Sign in'),
    h('p', {id: 'token-help'},
      'Paste the access token an administrator made for you (',
      h('code', {}, 'assay token create --role annotator --name you'),
      '). It is kept in this tab only and sent with every request.'),
    h('div', {class: 'field'}, labelled('Access token', input)),
    problemBox,
    h('div', {class: 'actions'}, button));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    try {
      user = await api('/whoami', {token});
      storeToken(token);
      showUser(false);
      announce(`Signed in as ${user.name} (${user.role}).`);
      if (!location.hash || location.hash === '#/' || location.hash === '#') {
        history.replaceState(null, '', defaultHash());
      }
      await route();
    } catch (error) {
      replace(problemBox, errorBox(error.status === 401 ? new Error('That token was not accepted. Check that it was pasted whole.') : error));
      button.disabled = false;
      input.focus();
    }
  });
  replace(view, form, problem ? errorBox(problem) : null);
  input.focus();
}

async function start() {
  signOutButton.addEventListener('click', () => {
    storeToken('');
    user = null;
    announce('Signed out.');
    showSignIn();
  });
  window.addEventListener('hashchange', route);
  // With a stored token, or on a server started with --dev (no token needed),
  // whoami answers at once; otherwise the user signs in.
  const hadToken = Boolean(storedToken());
  try {
    user = await api('/whoami');
  } catch (error) {
    if (error.status === 401) {
      storeToken('');
      showSignIn(hadToken ? new Error('Your session token was refused; sign in again.') : null);
      return;
    }
    replace(view, h('h1', {}, 'Assay'), errorBox(error));
    return;
  }
  showUser(!hadToken);
  await route();
}

start();
