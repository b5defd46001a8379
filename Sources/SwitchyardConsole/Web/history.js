import { h, title } from './app.js';
export async function mount(container) { title('history'); container.append(h('h1', {}, 'history')); }
