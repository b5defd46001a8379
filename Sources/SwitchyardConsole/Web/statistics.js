import { h, title } from './app.js';
export async function mount(container) { title('statistics'); container.append(h('h1', {}, 'statistics')); }
