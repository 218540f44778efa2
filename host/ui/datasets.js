// Datasets: the list, and one dataset's versions with their release notes and
// the diff between any two versions.

import { api, segment } from './api.js';
import { h, replace, errorBox, labelled, count, timeElement } from './dom.js';

// Ids listed per diff section before "and N more".
const DIFF_IDS_SHOWN_MAX = 500;

export async function renderDatasets(view, ctx) {
  ctx.title('Datasets');
  const {datasets} = await api('/datasets', {signal: ctx.signal});
  const heading = h('h1', {}, 'Datasets');
  if (!datasets || datasets.length === 0) {
    replace(view, heading, h('p', {class: 'muted'}, 'There are no datasets yet (assay dataset create NAME).'));
    return;
  }
  const rows = document.createDocumentFragment();
  for (const dataset of datasets) {
    rows.append(h('tr', {},
      h('th', {scope: 'row'}, h('a', {href: `#/datasets/${segment(dataset.name)}`}, dataset.name)),
      h('td', {}, dataset.kind),
      h('td', {}, dataset.description || ''),
      h('td', {class: 'number'}, count(dataset.latest_version)),
      h('td', {class: 'number'}, count(dataset.example_count)),
      h('td', {}, timeElement(dataset.created_at))));
  }
  replace(view, heading,
    h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'dataset-list'},
      h('caption', {class: 'visually-hidden'}, 'Datasets'),
      h('thead', {}, h('tr', {},
        h('th', {scope: 'col'}, 'Dataset'), h('th', {scope: 'col'}, 'Kind'), h('th', {scope: 'col'}, 'Description'),
        h('th', {scope: 'col', class: 'number'}, 'Latest version'), h('th', {scope: 'col', class: 'number'}, 'Examples'),
        h('th', {scope: 'col'}, 'Created'))),
      h('tbody', {}, rows))));
}

export async function renderDataset(view, ctx, name, query) {
  ctx.title(`Dataset · ${name}`);
  const options = {signal: ctx.signal};
  const [shown, versionList] = await Promise.all([
    api(`/datasets/${segment(name)}`, options),
    api(`/datasets/${segment(name)}/versions`, options),
  ]);
  const dataset = shown.dataset;
  const versions = versionList.versions || [];
  const tagsByVersion = new Map();
  for (const tag of shown.tags || []) {
    if (!tagsByVersion.has(tag.version)) tagsByVersion.set(tag.version, []);
    tagsByVersion.get(tag.version).push(tag.name);
  }

  const rows = document.createDocumentFragment();
  for (const version of versions) {
    rows.append(h('tr', {dataset: {version: String(version.version)}},
      h('th', {scope: 'row', class: 'number'}, String(version.version)),
      h('td', {}, (tagsByVersion.get(version.version) || []).map((tag) => h('span', {class: 'chip tag'}, tag))),
      h('td', {}, timeElement(version.created_at)),
      h('td', {}, version.author),
      h('td', {class: 'note'}, version.note || h('span', {class: 'muted'}, 'no note')),
      h('td', {class: 'number'}, count(version.example_count)),
      h('td', {class: 'changes-cell'},
        h('span', {class: 'added'}, `+${count(version.added)}`), ' ',
        h('span', {class: 'modified'}, `~${count(version.modified)}`), ' ',
        h('span', {class: 'removed'}, `−${count(version.removed)}`))));
  }

  const label = (version) => {
    const tags = tagsByVersion.get(version.version) || [];
    return `${version.version}${tags.length ? ` (${tags.join(', ')})` : ''}`;
  };
  const wantedFrom = query.get('from') || (versions[1] && String(versions[1].version)) || '';
  const wantedTo = query.get('to') || (versions[0] && String(versions[0].version)) || '';
  const fromSelect = h('select', {id: 'diff-from'},
    versions.map((version) => h('option', {value: String(version.version), selected: String(version.version) === wantedFrom}, label(version))));
  const toSelect = h('select', {id: 'diff-to'},
    versions.map((version) => h('option', {value: String(version.version), selected: String(version.version) === wantedTo}, label(version))));
  const result = h('div', {id: 'diff-result'});
  const diffForm = h('form', {class: 'card', 'aria-labelledby': 'diff-title'},
    h('h2', {id: 'diff-title'}, 'Compare two versions'),
    versions.length < 2
      ? h('p', {class: 'muted small'}, 'This dataset has one version so far.')
      : h('div', {class: 'inline'},
        h('div', {class: 'field'}, labelled('From version', fromSelect)),
        h('div', {class: 'field'}, labelled('To version', toSelect)),
        h('button', {type: 'submit', id: 'diff-button', class: 'primary'}, 'Show the diff')),
    result);
  const showDiff = async () => {
    const from = fromSelect.value;
    const to = toSelect.value;
    rememberDiff(name, from, to);
    replace(result, h('p', {class: 'muted'}, 'Comparing…'));
    try {
      const diff = await api(`/datasets/${segment(name)}/diff?${new URLSearchParams({from, to})}`, options);
      replace(result, diffView(diff));
      ctx.announce(`Version ${diff.from} to ${diff.to}: ${diff.added.length} added, ${diff.removed.length} removed, ${diff.modified.length} modified.`);
    } catch (error) {
      if (error.name !== 'AbortError') replace(result, errorBox(error));
    }
  };
  diffForm.addEventListener('submit', (event) => {
    event.preventDefault();
    showDiff();
  });

  replace(view,
    h('p', {class: 'breadcrumb'}, h('a', {href: '#/datasets'}, 'Datasets'), ' / '),
    h('h1', {}, dataset.name),
    dataset.description ? h('p', {}, dataset.description) : null,
    h('p', {class: 'muted small'},
      `${dataset.kind} · latest version ${dataset.latest_version} · ${count(dataset.example_count)} examples · `,
      h('a', {href: `#/experiments?dataset=${encodeURIComponent(dataset.name)}`}, 'experiments')),
    h('section', {'aria-labelledby': 'versions-title'},
      h('h2', {id: 'versions-title'}, 'Versions'),
      h('div', {class: 'table-wrap'}, h('table', {class: 'data', id: 'versions'},
        h('caption', {class: 'visually-hidden'}, `Versions of ${dataset.name}, newest first, with release notes`),
        h('thead', {}, h('tr', {},
          h('th', {scope: 'col', class: 'number'}, 'Version'), h('th', {scope: 'col'}, 'Tags'), h('th', {scope: 'col'}, 'Created'),
          h('th', {scope: 'col'}, 'Author'), h('th', {scope: 'col'}, 'Release note'),
          h('th', {scope: 'col', class: 'number'}, 'Examples'), h('th', {scope: 'col'}, 'Added / modified / removed'))),
        h('tbody', {}, rows)))),
    diffForm);
  if (versions.length >= 2) await showDiff();
}

function rememberDiff(name, from, to) {
  history.replaceState(null, '', `#/datasets/${segment(name)}?${new URLSearchParams({from, to})}`);
}

function diffView(diff) {
  const section = (title, id, items, render) => {
    const list = h('ul', {class: 'plain diff-list', id});
    const fragment = document.createDocumentFragment();
    for (const item of items.slice(0, DIFF_IDS_SHOWN_MAX)) fragment.append(h('li', {}, render(item)));
    if (items.length > DIFF_IDS_SHOWN_MAX) {
      fragment.append(h('li', {class: 'muted'}, `and ${count(items.length - DIFF_IDS_SHOWN_MAX)} more`));
    }
    if (items.length === 0) fragment.append(h('li', {class: 'muted'}, 'none'));
    list.append(fragment);
    return h('div', {class: `diff-section ${id}`}, h('h3', {}, `${title} (${count(items.length)})`), list);
  };
  return h('div', {class: 'diff'},
    h('p', {}, `From version ${diff.from} to version ${diff.to}:`),
    section('Added', 'diff-added', diff.added || [], (id) => h('code', {}, id)),
    section('Removed', 'diff-removed', diff.removed || [], (id) => h('code', {}, id)),
    section('Modified', 'diff-modified', diff.modified || [], (entry) => [
      h('code', {}, entry.id), ': ',
      (entry.changed_fields || []).map((field) => h('span', {class: 'chip field-chip'}, field)),
    ]));
}
