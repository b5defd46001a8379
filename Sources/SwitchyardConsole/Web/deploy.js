import { h, title } from './app.js';
export async function mount(container) { title('deploy'); container.append(h('h1', {}, 'deploy')); }
