// Annotation queues: the list with progress, and the review page where a
// subject-matter expert reads one reserved trace, corrects the example drafted
// from it, and accepts, rejects or skips it, from the keyboard if they like.

import { api, ApiError, segment } from './api.js';
import { h, replace, errorBox, labelled, count, timeElement, prettyJson, uniqueId } from './dom.js';

const SEVERITIES = [
  ['p0', 'p0 (critical)'],
  ['p1', 'p1 (serious)'],
  ['p2', 'p2 (minor)'],
];

// What each refusal of a decision means, in words for the reviewer.
const CONFLICTS = {
  reservation_expired:
    'Your reservation of this item expired before you decided, so it went back to the queue. Nothing was saved.',
  already_decided:
    'Someone else already decided this item while you had it open. Nothing was saved.',
  not_reserved_by_you:
    'Another reviewer has taken this item (your reservation had run out). Nothing was saved.',
};

const SHORTCUTS = [
  [['Ctrl', 'Enter'], 'or', ['Alt', 'A'], 'Accept the example'],
  [['Alt', 'R'], '', null, 'Reject (type the reason, then Enter)'],
  [['Alt', 'S'], '', null, 'Skip: give the item back to the queue'],
];

export async function renderQueueList(view, ctx) {
  ctx.title('Annotation queues');
  const data = await api('/queues', {signal: ctx.signal});
  const queues = (data && data.queues) || [];
  const heading = h('h1', {}, 'Annotation queues');
  if (queues.length === 0) {
    replace(view, heading, h('p', {class: 'muted'}, 'There are no annotation queues yet. An engineer creates them (assay queue create).'));
    return;
  }
  const rows = document.createDocumentFragment();
  for (const queue of queues) {
    const counts = queue.counts || {};
    const reviewed = (counts.accepted || 0) + (counts.rejected || 0);
    const total = reviewed + (counts.pending || 0) + (counts.reserved || 0);
    rows.append(h('tr', {},
      h('th', {scope: 'row'},
        h('a', {href: `#/queues/${segment(queue.name)}`}, queue.name),
        queue.description ? h('div', {class: 'muted small'}, queue.description) : null),
      h('td', {}, queue.dataset ? h('a', {href: `#/datasets/${segment(queue.dataset)}`}, queue.dataset) : '—'),
      h('td', {}, progress(reviewed, total, queue.name)),
      h('td', {class: 'number'}, count(counts.pending || 0)),
      h('td', {class: 'number'}, count(counts.reserved || 0)),
      h('td', {class: 'number'}, count(counts.accepted || 0)),
      h('td', {class: 'number'}, count(counts.rejected || 0))));
  }
  replace(view, heading,
    h('p', {class: 'muted'}, 'Open a queue to review its traces one at a time.'),
    h('div', {class: 'table-wrap'},
      h('table', {class: 'data', id: 'queue-list'},
        h('caption', {class: 'visually-hidden'}, 'Annotation queues and their progress'),
        h('thead', {}, h('tr', {},
          h('th', {scope: 'col'}, 'Queue'), h('th', {scope: 'col'}, 'Dataset'), h('th', {scope: 'col'}, 'Progress'),
          h('th', {scope: 'col', class: 'number'}, 'Pending'), h('th', {scope: 'col', class: 'number'}, 'Reserved'),
          h('th', {scope: 'col', class: 'number'}, 'Accepted'), h('th', {scope: 'col', class: 'number'}, 'Rejected'))),
        h('tbody', {}, rows))));
}

function progress(done, total, name) {
  const label = `${count(done)} of ${count(total)} reviewed`;
  return h('div', {class: 'progress'},
    h('progress', {max: String(Math.max(total, 1)), value: String(done), 'aria-label': `Progress of ${name}: ${label}`}),
    h('span', {class: 'small'}, label));
}

export async function renderQueue(view, ctx, name) {
  ctx.title(`Review · ${name}`);
  const data = await api(`/queues/${segment(name)}`, {signal: ctx.signal});
  const page = new ReviewPage(view, ctx, (data && data.queue) || data);
  await page.next();
}

// One queue's review page. It holds at most one reserved item at a time.
class ReviewPage {
  constructor(view, ctx, queue) {
    this.ctx = ctx;
    this.queue = queue;
    this.item = null;
    this.busy = false;
    this.timer = null;
    this.countsArea = h('p', {class: 'counts', id: 'queue-counts'});
    this.noticeArea = h('div', {id: 'review-notice'});
    this.itemArea = h('div', {id: 'review-item'});
    this.showCounts(queue);
    replace(view,
      h('div', {class: 'page-head'},
        h('p', {class: 'breadcrumb'}, h('a', {href: '#/queues'}, 'Queues'), ' / '),
        h('h1', {}, `Review: ${queue.name}`),
        queue.description ? h('p', {}, queue.description) : null,
        this.countsArea),
      queue.instructions
        ? h('details', {class: 'instructions', open: true},
          h('summary', {}, 'Instructions'), h('div', {class: 'prose'}, queue.instructions))
        : null,
      this.noticeArea,
      this.itemArea);
    document.addEventListener('keydown', (event) => this.onKey(event), {signal: ctx.signal});
    ctx.signal.addEventListener('abort', () => this.stopTimer());
  }

  showCounts(queue) {
    const counts = (queue && queue.counts) || {};
    const parts = [
      `${count(counts.pending || 0)} pending`,
      `${count(counts.reserved || 0)} reserved`,
      `${count(counts.accepted || 0)} accepted`,
      `${count(counts.rejected || 0)} rejected`,
    ];
    replace(this.countsArea, `Dataset ${queue.dataset || '—'} · ${parts.join(' · ')}`);
  }

  async refreshCounts() {
    try {
      const data = await api(`/queues/${segment(this.queue.name)}`, {signal: this.ctx.signal});
      this.showCounts((data && data.queue) || data);
    } catch {
      // The counts are a convenience; the review goes on without them.
    }
  }

  notice(kind, message) {
    if (!message) {
      replace(this.noticeArea);
      return;
    }
    replace(this.noticeArea, h('div', {class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, message));
  }

  async next() {
    this.item = null;
    this.stopTimer();
    replace(this.itemArea, h('p', {class: 'muted'}, 'Reserving the next item…'));
    let data;
    try {
      data = await api(`/queues/${segment(this.queue.name)}/next`, {method: 'POST', body: {}, signal: this.ctx.signal});
    } catch (error) {
      if (error.name === 'AbortError') return;
      replace(this.itemArea, errorBox(error), this.checkAgainButton());
      return;
    }
    if (this.ctx.signal.aborted) return;
    this.refreshCounts();
    if (!data || !data.item) {
      this.showEmpty();
      return;
    }
    this.showItem(data.item);
  }

  checkAgainButton() {
    return h('button', {type: 'button', id: 'check-again', onclick: () => this.next()}, 'Check again');
  }

  showEmpty() {
    const button = this.checkAgainButton();
    replace(this.itemArea, h('section', {class: 'card empty', 'aria-labelledby': 'empty-title'},
      h('h2', {id: 'empty-title'}, 'Nothing left to review'),
      h('p', {}, `Every item in ${this.queue.name} has been reviewed, is reserved by another reviewer, or was skipped by you.`),
      h('div', {class: 'actions'}, button, h('a', {href: '#/queues'}, 'Back to the queues'))));
    this.ctx.announce(`The queue ${this.queue.name} is empty.`);
    button.focus();
  }

  showItem(item) {
    this.item = item;
    const trace = item.trace || {};
    const draft = item.draft || {};
    this.editor = new ExampleEditor(trace, draft, this.queue.required_metadata || []);
    this.reservation = h('p', {class: 'reservation', id: 'reservation', dataset: {until: item.reserved_until || ''}});
    this.formProblem = h('div', {class: 'form-problem'});
    this.reasonInput = h('input', {type: 'text', id: 'reject-reason', autocomplete: 'off'});
    this.reasonInput.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.altKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        this.reject();
      }
    });
    const acceptButton = h('button', {type: 'button', id: 'accept', class: 'primary', 'aria-keyshortcuts': 'Control+Enter Alt+A', onclick: () => this.accept()},
      'Accept ', keys(['Ctrl', 'Enter']));
    const rejectButton = h('button', {type: 'button', id: 'reject', class: 'danger', 'aria-keyshortcuts': 'Alt+R', onclick: () => this.reject()},
      'Reject ', keys(['Alt', 'R']));
    const skipButton = h('button', {type: 'button', id: 'skip', 'aria-keyshortcuts': 'Alt+S', onclick: () => this.skip()},
      'Skip ', keys(['Alt', 'S']));
    const form = h('form', {class: 'card editor', 'aria-labelledby': 'editor-title', novalidate: true},
      h('h2', {id: 'editor-title'}, 'The example'),
      h('p', {class: 'muted small'}, `Accepting adds it to ${this.queue.dataset || 'the dataset'} as a new version.`),
      this.editor.element,
      this.formProblem,
      h('div', {class: 'decide'},
        h('div', {class: 'actions'}, acceptButton, skipButton),
        h('div', {class: 'field reject-field'}, labelled('Reason for rejecting', this.reasonInput)),
        h('div', {class: 'actions'}, rejectButton)),
      shortcutsBox());
    form.addEventListener('submit', (event) => event.preventDefault());
    replace(this.itemArea, h('div', {class: 'review', dataset: {itemId: item.id}},
      h('section', {class: 'trace', 'aria-labelledby': 'trace-title'},
        h('h2', {id: 'trace-title'}, 'Conversation'),
        this.reservation,
        transcript(trace),
        traceDetails(trace)),
      form));
    this.startTimer(item.reserved_until);
    this.ctx.announce(`Reviewing trace ${trace.id || item.id}.`);
    this.editor.focus();
  }

  startTimer(until) {
    const deadline = until ? new Date(until) : null;
    const show = () => {
      if (!deadline || Number.isNaN(deadline.getTime())) {
        replace(this.reservation, 'Reserved for you.');
        return;
      }
      const minutes = Math.round((deadline.getTime() - Date.now()) / 60000);
      const expired = deadline.getTime() <= Date.now();
      this.reservation.classList.toggle('warn', expired || minutes < 2);
      replace(this.reservation, expired
        ? 'Your reservation has expired: another reviewer may take this item.'
        : `Reserved for you until ${deadline.toLocaleTimeString('en-GB')} (about ${Math.max(minutes, 1)} min left).`);
    };
    show();
    this.timer = setInterval(show, 5000);
  }

  stopTimer() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  onKey(event) {
    if (!this.item || this.busy) return;
    let action = null;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key === 'Enter') action = () => this.accept();
    else if (event.altKey && !event.ctrlKey && !event.metaKey) {
      if (event.code === 'KeyA') action = () => this.accept();
      else if (event.code === 'KeyR') action = () => this.reject();
      else if (event.code === 'KeyS') action = () => this.skip();
    }
    if (!action) return;
    event.preventDefault();
    action();
  }

  problem(message) {
    replace(this.formProblem, message ? h('div', {class: 'notice error', role: 'alert'}, message) : null);
  }

  async accept() {
    if (!this.item || this.busy) return;
    const built = this.editor.example();
    if (built.problem) {
      this.problem(built.problem.message);
      built.problem.field.focus();
      return;
    }
    const note = this.editor.note();
    await this.decide('accept', {example: built.example, note}, (result) => {
      const where = result && result.dataset ? `${result.dataset} version ${result.version}` : 'the dataset';
      return `Accepted: added to ${where}${result && result.example_id ? ` as ${result.example_id}` : ''}.`;
    });
  }

  async reject() {
    if (!this.item || this.busy) return;
    const reason = this.reasonInput.value.trim();
    if (!reason) {
      this.problem('Type the reason for rejecting this trace, then press Enter.');
      this.reasonInput.focus();
      return;
    }
    await this.decide('reject', {reason}, () => `Rejected: ${reason}`);
  }

  async skip() {
    if (!this.item || this.busy) return;
    await this.decide('skip', {}, () => 'Skipped: the item went back to the queue.');
  }

  // Sends one decision on the current item, then moves on to the next one.
  async decide(action, body, describe) {
    const item = this.item;
    this.busy = true;
    this.problem(null);
    this.notice(null);
    const path = `/queues/${segment(this.queue.name)}/items/${segment(item.id)}/${action}`;
    try {
      const result = await api(path, {method: 'POST', body, signal: this.ctx.signal});
      const message = describe(result);
      this.notice('success', message);
      this.ctx.announce(message);
    } catch (error) {
      if (error.name === 'AbortError') return;
      this.busy = false;
      if (error instanceof ApiError && error.status === 409) {
        const message = CONFLICTS[error.code] || error.message;
        this.notice('error', message);
        await this.next();
        return;
      }
      // A refused example (a field the server found wrong) stays on screen to fix.
      this.problem(error.message);
      return;
    }
    this.busy = false;
    await this.next();
  }
}

function keys(combination) {
  const parts = [];
  combination.forEach((key, index) => {
    if (index > 0) parts.push('+');
    parts.push(h('kbd', {}, key));
  });
  return h('span', {class: 'keys', 'aria-hidden': 'true'}, parts);
}

function shortcutsBox() {
  const list = h('dl', {class: 'shortcuts'});
  for (const [first, joiner, second, meaning] of SHORTCUTS) {
    const keysText = h('dt', {}, keys(first), joiner ? ` ${joiner} ` : null, second ? keys(second) : null,
      h('span', {class: 'visually-hidden'}, [first.join('+'), second ? ` ${joiner} ${second.join('+')}` : ''].join('')));
    list.append(keysText, h('dd', {}, meaning));
  }
  return h('aside', {class: 'card shortcuts-box', 'aria-labelledby': 'shortcuts-title'},
    h('h2', {id: 'shortcuts-title', class: 'small-heading'}, 'Keyboard shortcuts'),
    list,
    h('p', {class: 'muted small'}, 'They work while you type in a field.'));
}

// The conversation as a chat transcript: the turns the agent was given, then
// what it answered, with every tool call and tool result.
function transcript(trace) {
  const list = h('ol', {class: 'transcript', id: 'transcript', 'aria-label': 'Conversation turns'});
  const given = (trace.inputs && trace.inputs.messages) || [];
  const answered = (trace.outputs && trace.outputs.messages) || [];
  for (const message of given) list.append(turn(message));
  if (answered.length > 0 || (trace.outputs && trace.outputs.tool_calls)) {
    list.append(h('li', {class: 'turn-divider'}, 'The agent answered'));
  }
  for (const message of answered) list.append(turn(message));
  const calls = (trace.outputs && trace.outputs.tool_calls) || [];
  const shownInMessages = answered.some((message) => (message.tool_calls || []).length > 0);
  if (calls.length > 0 && !shownInMessages) {
    list.append(h('li', {class: 'turn turn-assistant'},
      h('div', {class: 'turn-role'}, 'Assistant · tool calls'),
      calls.map(toolCall)));
  }
  if (given.length === 0 && answered.length === 0) list.append(h('li', {class: 'muted'}, 'This trace has no messages.'));
  return list;
}

const ROLE_NAMES = {system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool result'};

function turn(message) {
  const role = String(message.role || 'unknown');
  const roleClass = /^[a-z_]+$/.test(role) ? role : 'other';
  let label = ROLE_NAMES[role] || role;
  if (role === 'tool' && message.name) label = `${label} · ${message.name}`;
  return h('li', {class: `turn turn-${roleClass}`},
    h('div', {class: 'turn-role'}, label,
      message.tool_call_id ? h('span', {class: 'muted small'}, ` (${message.tool_call_id})`) : null),
    message.content ? h('div', {class: 'turn-content'}, typeof message.content === 'string' ? message.content : prettyJson(message.content)) : null,
    (message.tool_calls || []).map(toolCall));
}

function toolCall(call) {
  const args = call.args !== undefined ? call.args : call.arguments;
  return h('div', {class: 'tool-call'},
    h('div', {}, 'Calls ', h('code', {class: 'tool-name'}, call.name || '?'),
      call.id ? h('span', {class: 'muted small'}, ` (${call.id})`) : null),
    args !== undefined && args !== null ? h('pre', {class: 'json'}, prettyJson(args)) : null);
}

function traceDetails(trace) {
  const list = h('dl', {class: 'facts', id: 'trace-facts'});
  const add = (term, ...value) => list.append(h('dt', {}, term), h('dd', {}, value));
  add('Trace', h('code', {}, trace.id || '—'), trace.project ? ` in ${trace.project}` : '', trace.name ? ` (${trace.name})` : '');
  add('Started', timeElement(trace.start_time));
  const latency = typeof trace.latency_ms === 'number'
    ? trace.latency_ms
    : (trace.start_time && trace.end_time ? new Date(trace.end_time) - new Date(trace.start_time) : null);
  add('Latency', latency === null || Number.isNaN(latency) ? '—' : `${count(latency)} ms`);
  add('Error', trace.error
    ? h('span', {class: 'error-text', id: 'trace-error'}, typeof trace.error === 'string' ? trace.error : prettyJson(trace.error))
    : 'none');
  const tags = trace.tags || [];
  add('Tags', tags.length ? tags.map((tag) => h('span', {class: 'chip'}, tag)) : '—');
  const feedback = trace.feedback || [];
  add('Feedback', feedback.length
    ? h('ul', {class: 'plain', id: 'trace-feedback'}, feedback.map((entry) => h('li', {},
      h('strong', {}, entry.key), `: ${feedbackValue(entry)}`,
      entry.comment ? ` — “${entry.comment}”` : '')))
    : 'none');
  const metadata = trace.metadata && typeof trace.metadata === 'object' ? Object.entries(trace.metadata) : [];
  if (metadata.length) {
    add('Metadata', metadata.map(([key, value]) => h('span', {class: 'chip'}, `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)));
  }
  const context = trace.inputs && trace.inputs.context;
  return h('div', {class: 'trace-details'},
    h('h3', {}, 'About this trace'),
    list,
    context !== undefined && context !== null
      ? h('details', {class: 'context', open: true},
        h('summary', {}, 'Retrieved context'),
        h('pre', {class: 'json', id: 'trace-context'}, prettyJson(context)))
      : null);
}

function feedbackValue(entry) {
  if (entry.score !== null && entry.score !== undefined) return String(entry.score);
  if (entry.value !== null && entry.value !== undefined) return typeof entry.value === 'string' ? entry.value : JSON.stringify(entry.value);
  return '—';
}

function toolName(tool) {
  if (typeof tool === 'string') return tool;
  if (tool && typeof tool === 'object') return tool.name || (tool.function && tool.function.name) || null;
  return null;
}

function toolDescription(tool) {
  if (tool && typeof tool === 'object') return tool.description || (tool.function && tool.function.description) || '';
  return '';
}

// The editable example: reference, must_call, must_not_say, required metadata, note.
class ExampleEditor {
  constructor(trace, draft, requiredMetadata) {
    this.draft = draft;
    const outputs = draft.outputs || {};
    const reference = outputs.reference;
    this.referenceIsJson = reference !== null && reference !== undefined && typeof reference !== 'string';
    this.reference = h('textarea', {id: 'reference', rows: '6', spellcheck: 'true', 'aria-describedby': 'reference-help'});
    this.reference.value = reference === null || reference === undefined ? '' : prettyJson(reference);

    const inputs = draft.inputs || trace.inputs || {};
    const tools = (inputs.tools || []).map((tool) => ({name: toolName(tool), description: toolDescription(tool)}))
      .filter((tool) => tool.name);
    for (const name of outputs.must_call || []) {
      if (!tools.some((tool) => tool.name === name)) tools.push({name, description: 'not among the tools the agent had'});
    }
    const mustCall = new Set(outputs.must_call || []);
    this.toolBoxes = tools.map((tool) => h('input', {type: 'checkbox', value: tool.name, checked: mustCall.has(tool.name), id: uniqueId('must-call')}));
    const toolList = tools.length
      ? h('ul', {class: 'checks'}, tools.map((tool, index) => h('li', {},
        this.toolBoxes[index],
        h('label', {for: this.toolBoxes[index].id}, h('code', {}, tool.name),
          tool.description ? h('span', {class: 'muted small'}, ` ${tool.description}`) : null))))
      : h('p', {class: 'muted small'}, 'No tools were available in this conversation.');

    this.phrases = [...(outputs.must_not_say || [])];
    this.phraseList = h('ul', {class: 'phrases', id: 'must-not-say-list', 'aria-label': 'Forbidden phrases'});
    this.phraseInput = h('input', {type: 'text', id: 'must-not-say-input', autocomplete: 'off'});
    this.phraseInput.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.altKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        this.addPhrase();
      }
    });
    this.drawPhrases();

    this.metadataFields = requiredMetadata.map((key) => {
      const current = draft.metadata && draft.metadata[key] !== undefined ? String(draft.metadata[key]) : '';
      let control;
      if (key === 'severity') {
        control = h('select', {id: `metadata-${key}`, required: true},
          h('option', {value: '', selected: current === ''}, 'Choose…'),
          SEVERITIES.map(([value, label]) => h('option', {value, selected: current === value}, label)));
        if (current && !SEVERITIES.some(([value]) => value === current)) {
          control.append(h('option', {value: current, selected: true}, current));
        }
      } else {
        control = h('input', {type: 'text', id: `metadata-${key}`, value: current, required: true, autocomplete: 'off'});
      }
      return {key, control};
    });
    this.noteInput = h('input', {type: 'text', id: 'accept-note', autocomplete: 'off'});

    this.element = h('div', {class: 'editor-fields'},
      h('div', {class: 'field'},
        labelled(this.referenceIsJson ? 'Reference output (JSON)' : 'Reference output', this.reference),
        h('p', {id: 'reference-help', class: 'muted small'},
          this.referenceIsJson ? 'A structured reference; keep it valid JSON.' : 'The ideal final answer, as the agent should have said it.')),
      h('fieldset', {class: 'field'}, h('legend', {}, 'Must call'), toolList),
      h('fieldset', {class: 'field'}, h('legend', {}, 'Must not say'),
        this.phraseList,
        h('div', {class: 'inline'},
          h('div', {class: 'field'}, labelled('New phrase', this.phraseInput)),
          h('button', {type: 'button', id: 'add-phrase', onclick: () => this.addPhrase()}, 'Add phrase'))),
      this.metadataFields.length
        ? h('fieldset', {class: 'field metadata'}, h('legend', {}, 'Metadata'),
          this.metadataFields.map(({key, control}) => h('div', {class: 'field'}, labelled(key, control))))
        : null,
      h('div', {class: 'field'}, labelled('Note for the release notes (optional)', this.noteInput)));
  }

  focus() {
    this.reference.focus();
  }

  addPhrase() {
    const phrase = this.phraseInput.value.trim();
    if (!phrase) return;
    if (!this.phrases.includes(phrase)) this.phrases.push(phrase);
    this.phraseInput.value = '';
    this.drawPhrases();
    this.phraseInput.focus();
  }

  drawPhrases() {
    const items = document.createDocumentFragment();
    this.phrases.forEach((phrase, index) => {
      const remove = h('button', {type: 'button', class: 'link-button', 'aria-label': `Remove “${phrase}”`,
        onclick: () => {
          this.phrases.splice(index, 1);
          this.drawPhrases();
          this.phraseInput.focus();
        }}, 'Remove');
      items.append(h('li', {}, h('span', {class: 'phrase'}, phrase), remove));
    });
    if (this.phrases.length === 0) items.append(h('li', {class: 'muted small'}, 'None.'));
    replace(this.phraseList, items);
  }

  note() {
    return this.noteInput.value.trim();
  }

  // The example to accept, or the first problem with the field to fix.
  example() {
    const outputs = {...(this.draft.outputs || {})};
    const text = this.reference.value.trim();
    if (!text) {
      delete outputs.reference;
    } else if (this.referenceIsJson) {
      try {
        outputs.reference = JSON.parse(text);
      } catch {
        return {problem: {field: this.reference, message: 'The reference output is not valid JSON.'}};
      }
    } else {
      outputs.reference = this.reference.value;
    }
    outputs.must_call = this.toolBoxes.filter((box) => box.checked).map((box) => box.value);
    outputs.must_not_say = [...this.phrases];
    const metadata = {...(this.draft.metadata || {})};
    for (const {key, control} of this.metadataFields) {
      const value = control.value.trim();
      if (!value) return {problem: {field: control, message: `Set ${key} before accepting.`}};
      metadata[key] = value;
    }
    const inputs = this.draft.inputs || {};
    return {example: {inputs, outputs, metadata}};
  }
}
