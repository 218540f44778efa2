// Experiments: the experiments of a dataset with their summary and gates, and
// the comparison of two of them: a per-key chart, then every example whose
// score changed, regressions first, both outputs side by side, filterable by
// metadata slice. The comparison table is drawn a page at a time from a
// DocumentFragment, so a 1,500-example experiment stays quick.

import { api, segment } from './api.js';
import { h, svg, replace, labelled, score, percent, signed, count, timeElement, prettyJson } from './dom.js';

const PAGE_SIZE = 100;
const SLICE_KEYS = ['severity', 'persona', 'source'];

export async function renderExperiments(view, ctx, datasetName) {
  ctx.title('Experiments');
  const {datasets} = await api('/datasets', {signal: ctx.signal});
  const heading = h('h1', {}, 'Experiments');
  if (!datasets || datasets.length === 0) {
    replace(view, heading, h('p', {class: 'muted'}, 'There are no datasets yet, so no experiments either.'));
    return;
  }
  const chosen = datasetName && datasets.some((dataset) => dataset.name === datasetName) ? datasetName : datasets[0].name;
  const {experiments} = await api(`/experiments?dataset=${encodeURIComponent(chosen)}`, {signal: ctx.signal});
  ctx.title(`Experiments · ${chosen}`);

  const datasetSelect = h('select', {id: 'experiment-dataset'},
    datasets.map((dataset) => h('option', {value: dataset.name, selected: dataset.name === chosen}, dataset.name)));
  datasetSelect.addEventListener('change', () => {
    location.hash = `#/experiments?dataset=${encodeURIComponent(datasetSelect.value)}`;
  });

  const completed = experiments.filter((experiment) => experiment.status === 'completed');
  const option = (experiment, selected) => h('option', {value: experiment.id, selected},
    `${experiment.name} · ${new Date(experiment.created_at).toLocaleString('en-GB')}`);
  const selectA = h('select', {id: 'compare-a'}, completed.map((experiment, index) => option(experiment, index === 1)));
  const selectB = h('select', {id: 'compare-b'}, completed.map((experiment, index) => option(experiment, index === 0)));
  const compareButton = h('button', {type: 'submit', id: 'compare-button', class: 'primary', disabled: completed.length < 2}, 'Compare');
  const compareForm = h('form', {class: 'card compare-form', 'aria-labelledby': 'compare-title'},
    h('h2', {id: 'compare-title'}, 'Compare two experiments'),
    completed.length < 2
      ? h('p', {class: 'muted small'}, 'Two completed experiments are needed to compare.')
      : h('p', {class: 'muted small'}, 'B is compared with A: a lower score in B is a regression.'),
    h('div', {class: 'inline'},
      h('div', {class: 'field'}, labelled('Baseline (A)', selectA)),
      h('div', {class: 'field'}, labelled('Candidate (B)', selectB)),
      compareButton));
  compareForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (selectA.value === selectB.value) {
      ctx.announce('Pick two different experiments.');
      return;
    }
    location.hash = `#/experiments/compare?${new URLSearchParams({a: selectA.value, b: selectB.value})}`;
  });

  const list = document.createDocumentFragment();
  for (const experiment of experiments) list.append(experimentCard(experiment));
  replace(view,
    heading,
    h('form', {class: 'inline toolbar', 'aria-label': 'Choose a dataset'},
      h('div', {class: 'field'}, labelled('Dataset', datasetSelect))),
    compareForm,
    h('h2', {}, `${count(experiments.length)} experiment${experiments.length === 1 ? '' : 's'} of ${chosen}`),
    experiments.length === 0
      ? h('p', {class: 'muted'}, 'No experiment has graded this dataset yet (assay eval --dataset NAME@VERSION ...).')
      : h('div', {id: 'experiment-list'}, list));
}

function experimentCard(experiment) {
  const summary = experiment.summary || {};
  const gates = Array.isArray(experiment.gates) ? experiment.gates : [];
  const failing = gates.filter((gate) => !gate.holds).length;
  const titleId = `experiment-${experiment.id}`;
  return h('section', {class: 'card experiment', 'aria-labelledby': titleId, dataset: {experimentId: experiment.id}},
    h('div', {class: 'card-head'},
      h('h3', {id: titleId}, experiment.name),
      h('span', {class: `badge status-${experiment.status}`}, experiment.status),
      gates.length
        ? h('span', {class: `badge ${failing ? 'fail' : 'pass'}`}, failing ? `${failing} gate${failing === 1 ? '' : 's'} failing` : 'all gates pass')
        : null),
    h('p', {class: 'muted small'},
      h('code', {}, experiment.id), ` · ${experiment.dataset}@${experiment.dataset_version} · `,
      `${count(experiment.example_count)} examples · `, timeElement(experiment.created_at), ` by ${experiment.created_by}`),
    metadataChips(experiment.metadata),
    experiment.error ? h('div', {class: 'notice error'}, experiment.error) : null,
    (summary.keys || []).length ? summaryTable(experiment, summary) : null,
    gates.length ? gateList(gates) : null,
    (summary.slices || []).length ? sliceTable(summary) : null);
}

function metadataChips(metadata) {
  if (!metadata || typeof metadata !== 'object') return null;
  const entries = Object.entries(metadata);
  if (entries.length === 0) return null;
  return h('p', {class: 'chips'}, entries.map(([key, value]) =>
    h('span', {class: 'chip'}, `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)));
}

function summaryTable(experiment, summary) {
  const rows = document.createDocumentFragment();
  for (const key of summary.keys) {
    rows.append(h('tr', {},
      h('th', {scope: 'row'}, h('code', {}, key.key)),
      h('td', {class: 'number'}, score(key.mean)),
      h('td', {class: 'number'}, percent(key.pass_rate)),
      h('td', {class: 'number'}, count(key.count)),
      h('td', {class: 'number'}, count(key.errors)),
      h('td', {class: 'number'}, score(key.severity_weighted))));
  }
  return h('div', {class: 'table-wrap'}, h('table', {class: 'data summary'},
    h('caption', {}, `Scores of ${experiment.name}`),
    h('thead', {}, h('tr', {},
      h('th', {scope: 'col'}, 'Score key'), h('th', {scope: 'col', class: 'number'}, 'Mean'),
      h('th', {scope: 'col', class: 'number'}, 'Pass rate'), h('th', {scope: 'col', class: 'number'}, 'Scored'),
      h('th', {scope: 'col', class: 'number'}, 'Errors'), h('th', {scope: 'col', class: 'number'}, 'Severity-weighted'))),
    h('tbody', {}, rows)));
}

function gateList(gates) {
  return h('div', {class: 'gates'},
    h('h4', {}, 'Gates'),
    h('ul', {class: 'plain'}, gates.map((gate) => h('li', {class: `gate ${gate.holds ? 'pass' : 'fail'}`},
      h('span', {class: `badge ${gate.holds ? 'pass' : 'fail'}`}, gate.holds ? 'passes' : 'fails'),
      ' ', h('code', {}, gate.gate),
      h('span', {class: 'muted small'}, ` actual ${score(gate.actual)}, margin ${signed(gate.margin)}`),
      !gate.holds && (gate.worst || []).length
        ? h('ul', {class: 'worst small'}, gate.worst.map((worst) => h('li', {},
          h('code', {}, worst.example_id),
          worst.value !== null && worst.value !== undefined ? ` ${score(worst.value)}` : '',
          worst.comment ? ` — ${worst.comment}` : '',
          worst.agent_error ? ` — agent error: ${worst.agent_error}` : '')))
        : null))));
}

function sliceTable(summary) {
  const keys = summary.keys.map((key) => key.key);
  const rows = document.createDocumentFragment();
  for (const slice of summary.slices) {
    const means = new Map((slice.keys || []).map((key) => [key.key, key.mean]));
    rows.append(h('tr', {},
      h('th', {scope: 'row'}, `${slice.metadata_key} = ${slice.value}`),
      h('td', {class: 'number'}, count(slice.example_count)),
      keys.map((key) => h('td', {class: 'number'}, score(means.get(key))))));
  }
  return h('details', {class: 'slices'},
    h('summary', {}, 'Mean per metadata slice'),
    h('div', {class: 'table-wrap'}, h('table', {class: 'data'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Slice'), h('th', {scope: 'col', class: 'number'}, 'Examples'),
        keys.map((key) => h('th', {scope: 'col', class: 'number'}, key)))),
      h('tbody', {}, rows))));
}

export async function renderComparison(view, ctx, query) {
  const a = query.get('a') || '';
  const b = query.get('b') || '';
  ctx.title('Compare experiments');
  if (!a || !b) {
    replace(view, h('h1', {}, 'Compare experiments'),
      h('p', {}, 'Pick two experiments to compare on the ', h('a', {href: '#/experiments'}, 'experiments page'), '.'));
    return;
  }
  const options = {signal: ctx.signal};
  const [comparison, shownA, shownB] = await Promise.all([
    api(`/experiments/compare?${new URLSearchParams({a, b})}`, options),
    api(`/experiments/${segment(a)}`, options),
    api(`/experiments/${segment(b)}`, options),
  ]);
  // The comparison carries no metadata per example; both experiments' results do.
  const metadata = new Map();
  for (const result of [...(shownA.results || []), ...(shownB.results || [])]) {
    if (!metadata.has(result.example_id)) metadata.set(result.example_id, result.metadata || {});
  }
  const experimentA = comparison.a;
  const experimentB = comparison.b;
  ctx.title(`${experimentA.name} vs ${experimentB.name}`);

  const table = new ChangeTable(comparison, metadata, query, ctx);
  replace(view,
    h('p', {class: 'breadcrumb'},
      h('a', {href: `#/experiments?dataset=${encodeURIComponent(experimentB.dataset)}`}, `Experiments of ${experimentB.dataset}`), ' / '),
    h('h1', {}, 'Compare experiments'),
    h('dl', {class: 'facts sides'},
      h('dt', {}, h('span', {class: 'swatch swatch-a', 'aria-hidden': 'true'}), 'A (baseline)'),
      h('dd', {}, h('strong', {}, experimentA.name), ' ', h('code', {}, experimentA.id),
        ` · ${experimentA.dataset}@${experimentA.dataset_version} · `, timeElement(experimentA.created_at)),
      h('dt', {}, h('span', {class: 'swatch swatch-b', 'aria-hidden': 'true'}), 'B (candidate)'),
      h('dd', {}, h('strong', {}, experimentB.name), ' ', h('code', {}, experimentB.id),
        ` · ${experimentB.dataset}@${experimentB.dataset_version} · `, timeElement(experimentB.created_at))),
    comparison.same_dataset_version
      ? null
      : h('div', {class: 'notice warn'}, 'The two experiments graded different dataset versions: differences mix agent changes with dataset changes.'),
    h('p', {class: 'chips', id: 'change-counts'},
      h('span', {class: `badge ${comparison.regression_count ? 'fail' : 'pass'}`}, `${count(comparison.regression_count)} regression${comparison.regression_count === 1 ? '' : 's'}`),
      ' ',
      h('span', {class: 'badge improve'}, `${count(comparison.improvement_count)} improvement${comparison.improvement_count === 1 ? '' : 's'}`)),
    h('section', {class: 'card', 'aria-labelledby': 'chart-title'},
      h('h2', {id: 'chart-title'}, 'Mean score per key'),
      chart(comparison.keys || []),
      keyTable(comparison.keys || [])),
    h('section', {'aria-labelledby': 'changes-title'},
      h('h2', {id: 'changes-title'}, 'Examples that changed'),
      table.element));
  table.draw();
}

// A grouped horizontal bar chart of mean A vs mean B per key, as inline SVG.
function chart(keys) {
  const labelWidth = 190;
  const plotWidth = 420;
  const rowHeight = 46;
  const top = 34;
  const height = top + keys.length * rowHeight + 24;
  const width = labelWidth + plotWidth + 70;
  const x = (value) => labelWidth + Math.max(0, Math.min(1, value)) * plotWidth;
  const description = keys.map((key) => `${key.key}: A ${score(key.mean_a)}, B ${score(key.mean_b)}`).join('; ');
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart', id: 'key-chart', role: 'img',
    'aria-labelledby': 'key-chart-title key-chart-desc', preserveAspectRatio: 'xMinYMin meet',
  },
  svg('title', {id: 'key-chart-title'}, 'Mean score per key, A against B'),
  svg('desc', {id: 'key-chart-desc'}, description));
  // Legend.
  root.append(
    svg('rect', {x: labelWidth, y: 6, width: 14, height: 14, class: 'bar-a'}),
    svg('text', {x: labelWidth + 20, y: 18, class: 'chart-label'}, 'A (baseline)'),
    svg('rect', {x: labelWidth + 130, y: 6, width: 14, height: 14, class: 'bar-b'}),
    svg('text', {x: labelWidth + 150, y: 18, class: 'chart-label'}, 'B (candidate)'));
  // Grid.
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(
      svg('line', {x1: x(tick), x2: x(tick), y1: top - 4, y2: height - 20, class: 'grid'}),
      svg('text', {x: x(tick), y: height - 6, class: 'chart-tick', 'text-anchor': 'middle'}, String(tick)));
  }
  keys.forEach((key, index) => {
    const y = top + index * rowHeight;
    root.append(svg('text', {x: labelWidth - 10, y: y + 24, class: 'chart-label', 'text-anchor': 'end'}, key.key));
    [['a', key.mean_a, y + 4], ['b', key.mean_b, y + 22]].forEach(([side, value, barY]) => {
      const known = typeof value === 'number';
      const barWidth = known ? Math.max(1, x(value) - labelWidth) : 0;
      root.append(
        svg('rect', {x: labelWidth, y: barY, width: barWidth, height: 16, class: `bar-${side}`, 'data-key': key.key},
          svg('title', {}, `${key.key}, ${side.toUpperCase()}: ${score(value)}`)),
        svg('text', {x: labelWidth + barWidth + 6, y: barY + 13, class: 'chart-value'}, score(value)));
    });
    if (typeof key.delta === 'number' && Math.abs(key.delta) > 1e-9) {
      root.append(svg('text', {x: width - 4, y: y + 24, class: `chart-delta ${key.delta < 0 ? 'down' : 'up'}`, 'text-anchor': 'end'}, signed(key.delta)));
    }
  });
  return h('div', {class: 'chart-wrap'}, root);
}

function keyTable(keys) {
  return h('details', {class: 'key-table'},
    h('summary', {}, 'The same as a table'),
    h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'key-table'},
      h('thead', {}, h('tr', {},
        h('th', {scope: 'col'}, 'Score key'), h('th', {scope: 'col', class: 'number'}, 'Mean A'),
        h('th', {scope: 'col', class: 'number'}, 'Mean B'), h('th', {scope: 'col', class: 'number'}, 'Change'),
        h('th', {scope: 'col', class: 'number'}, 'Regressed'), h('th', {scope: 'col', class: 'number'}, 'Improved'))),
      h('tbody', {}, keys.map((key) => h('tr', {},
        h('th', {scope: 'row'}, h('code', {}, key.key)),
        h('td', {class: 'number'}, score(key.mean_a)),
        h('td', {class: 'number'}, score(key.mean_b)),
        h('td', {class: 'number'}, signed(key.delta)),
        h('td', {class: 'number'}, count(key.regressed)),
        h('td', {class: 'number'}, count(key.improved))))))));
}

// The per-example table with its filters and pages.
class ChangeTable {
  constructor(comparison, metadata, query, ctx) {
    this.changes = comparison.examples || [];
    this.metadata = metadata;
    this.ctx = ctx;
    this.page = 0;
    this.filters = {
      direction: query.get('direction') || '',
      key: query.get('key') || '',
    };
    for (const slice of SLICE_KEYS) this.filters[slice] = query.get(slice) || '';

    const controls = [];
    this.selects = {};
    const addSelect = (name, label, values, describe) => {
      const select = h('select', {id: `filter-${name}`},
        h('option', {value: ''}, 'All'),
        values.map((value) => h('option', {value, selected: this.filters[name] === value}, describe ? describe(value) : value)));
      select.addEventListener('change', () => {
        this.filters[name] = select.value;
        this.page = 0;
        this.remember();
        this.draw();
      });
      this.selects[name] = select;
      controls.push(h('div', {class: 'field'}, labelled(label, select)));
    };
    addSelect('direction', 'Change', ['regressed', 'improved'], (value) => (value === 'regressed' ? 'Regressions' : 'Improvements'));
    addSelect('key', 'Score key', (comparison.keys || []).map((key) => key.key));
    for (const slice of SLICE_KEYS) {
      const values = new Set();
      for (const entry of metadata.values()) if (entry[slice] !== undefined) values.add(String(entry[slice]));
      addSelect(slice, slice[0].toUpperCase() + slice.slice(1), [...values].sort());
    }

    this.summary = h('p', {class: 'muted', id: 'change-summary'});
    this.body = h('tbody', {});
    this.previous = h('button', {type: 'button', id: 'page-previous', onclick: () => this.turn(-1)}, 'Previous page');
    this.next = h('button', {type: 'button', id: 'page-next', onclick: () => this.turn(1)}, 'Next page');
    this.pager = h('div', {class: 'pager'}, this.previous, this.next);
    this.element = h('div', {},
      h('form', {class: 'inline toolbar filters', 'aria-label': 'Filter the examples', onsubmit: (event) => event.preventDefault()}, controls),
      this.summary,
      h('div', {class: 'table-wrap'}, h('table', {class: 'data changes', id: 'changes'},
        h('caption', {class: 'visually-hidden'}, 'Examples whose score changed from A to B, regressions first'),
        h('thead', {}, h('tr', {},
          h('th', {scope: 'col'}, 'Example'), h('th', {scope: 'col'}, 'Score key'), h('th', {scope: 'col'}, 'Change'),
          h('th', {scope: 'col'}, 'Output A (baseline)'), h('th', {scope: 'col'}, 'Output B (candidate)'))),
        this.body)),
      this.pager);
  }

  // Keeps the filters in the address, so a filtered view can be shared.
  remember() {
    const query = new URLSearchParams(location.hash.split('?')[1] || '');
    for (const [name, value] of Object.entries(this.filters)) {
      if (value) query.set(name, value);
      else query.delete(name);
    }
    history.replaceState(null, '', `#/experiments/compare?${query}`);
  }

  matching() {
    const {direction, key} = this.filters;
    return this.changes.filter((change) => {
      if (direction && change.direction !== direction) return false;
      if (key && change.key !== key) return false;
      const metadata = this.metadata.get(change.example_id) || {};
      for (const slice of SLICE_KEYS) {
        if (this.filters[slice] && String(metadata[slice] ?? '') !== this.filters[slice]) return false;
      }
      return true;
    });
  }

  turn(step) {
    this.page += step;
    this.draw();
    this.body.closest('table').scrollIntoView({block: 'start'});
  }

  draw() {
    const rows = this.matching();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    const start = this.page * PAGE_SIZE;
    const shown = rows.slice(start, start + PAGE_SIZE);
    const fragment = document.createDocumentFragment();
    for (const change of shown) fragment.append(this.row(change));
    if (shown.length === 0) {
      fragment.append(h('tr', {}, h('td', {colspan: '5', class: 'muted'},
        this.changes.length === 0 ? 'No example changed score between A and B.' : 'No changed example matches these filters.')));
    }
    this.body.replaceChildren(fragment);
    const total = this.changes.length;
    const text = rows.length === 0
      ? `Showing none of ${count(total)} changes.`
      : `Showing ${count(start + 1)}–${count(start + shown.length)} of ${count(rows.length)} matching changes (${count(total)} in all).`;
    this.summary.textContent = text;
    this.ctx.announce(text);
    this.previous.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
    this.pager.hidden = pages <= 1;
  }

  row(change) {
    const metadata = this.metadata.get(change.example_id) || {};
    const regressed = change.direction === 'regressed';
    return h('tr', {class: regressed ? 'regressed' : 'improved', dataset: {exampleId: change.example_id, direction: change.direction}},
      h('th', {scope: 'row'}, h('code', {}, change.example_id),
        h('div', {class: 'chips small'}, SLICE_KEYS.filter((slice) => metadata[slice] !== undefined)
          .map((slice) => h('span', {class: 'chip'}, `${slice}: ${metadata[slice]}`)))),
      h('td', {}, h('code', {}, change.key)),
      h('td', {class: 'change'},
        h('span', {class: `badge ${regressed ? 'fail' : 'improve'}`}, regressed ? 'Regression' : 'Improvement'),
        h('div', {class: 'small'}, `${score(change.a.value)} → ${score(change.b.value)} (${signed(change.delta)})`)),
      h('td', {class: 'side side-a'}, side(change.a)),
      h('td', {class: 'side side-b'}, side(change.b)));
  }
}

// One experiment's output for one example, with the grader's comment.
function side(value) {
  const outputs = value.outputs || {};
  const messages = Array.isArray(outputs.messages) ? outputs.messages : [];
  const text = messages
    .filter((message) => message.role === 'assistant' && message.content)
    .map((message) => (typeof message.content === 'string' ? message.content : prettyJson(message.content)))
    .join('\n\n');
  const calls = Array.isArray(outputs.tool_calls)
    ? outputs.tool_calls
    : messages.flatMap((message) => message.tool_calls || []);
  return [
    text ? h('div', {class: 'answer'}, text) : h('div', {class: 'muted small'}, 'No answer text.'),
    calls.length
      ? h('ul', {class: 'calls small'}, calls.map((call) => h('li', {}, h('code', {}, call.name || '?'),
        call.args !== undefined && call.args !== null ? h('span', {class: 'muted'}, ` ${JSON.stringify(call.args)}`) : null)))
      : null,
    value.agent_error !== null && value.agent_error !== undefined
      ? h('div', {class: 'error-text small'}, `Agent error: ${typeof value.agent_error === 'string' ? value.agent_error : JSON.stringify(value.agent_error)}`)
      : null,
    value.comment ? h('div', {class: 'comment small'}, h('span', {class: 'muted'}, 'Grader: '), value.comment) : null,
  ];
}
