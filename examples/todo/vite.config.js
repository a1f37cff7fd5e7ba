import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` serves the page with hot reload; the write API still comes from `npm start`
// (server.mjs), so /api is proxied to it.
export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': process.env.TODO_API_URL || 'http://localhost:3001',
    },
  },
});
