// The benchmark's peer: a Twilio webhook server of the shape of Ultravox's Node quickstart,
// written here for the comparison in docs/benchmarks.md. Like the quickstart it has express
// parse the form, POSTs the call to Ultravox with Node's own `http` module (the global agent,
// keep-alive by default since Node 19), answers TwiML built with the `twilio` package, and
// checks no signature. It is what a user would run instead of the service, not an example.
//
// Settings from the environment: HOST, PORT, ULTRAVOX_API_URL (e.g. http://127.0.0.1:8765/api),
// ULTRAVOX_API_KEY.
'use strict';

const http = require('http');
const express = require('express');
const twilio = require('twilio');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 3000);
const ULTRAVOX_API_URL = process.env.ULTRAVOX_API_URL;
const ULTRAVOX_API_KEY = process.env.ULTRAVOX_API_KEY;

const CALL_CONFIG = {
  systemPrompt: 'You are a friendly voice assistant answering a phone call.',
  medium: { twilio: {} },
  firstSpeakerSettings: { agent: {} },
};

function createUltravoxCall(webhook) {
  const body = JSON.stringify({
    ...CALL_CONFIG,
    metadata: {
      provider: 'twilio',
      providerCallId: webhook.CallSid,
      callerNumber: webhook.From,
      calledNumber: webhook.To,
    },
  });
  return new Promise((resolve, reject) => {
    const request = http.request(`${ULTRAVOX_API_URL}/calls`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'X-API-Key': ULTRAVOX_API_KEY,
        'Content-Length': Buffer.byteLength(body),
      },
    });
    request.on('response', (response) => {
      let data = '';
      response.on('data', (chunk) => {
        data += chunk;
      });
      response.on('end', () => {
        try {
          resolve(JSON.parse(data));
        } catch (error) {
          reject(error);
        }
      });
    });
    request.on('error', reject);
    request.write(body);
    request.end();
  });
}

const app = express();
app.use(express.urlencoded({ extended: false }));

app.get('/readyz', (req, res) => {
  res.json({ ready: true });
});

app.post('/twilio/incoming', async (req, res) => {
  try {
    const call = await createUltravoxCall(req.body);
    const twiml = new twilio.twiml.VoiceResponse();
    twiml.connect().stream({ url: call.joinUrl, name: 'ultravox' });
    res.type('text/xml');
    res.send(twiml.toString());
  } catch (error) {
    console.error('creating the Ultravox call failed:', error);
    const twiml = new twilio.twiml.VoiceResponse();
    twiml.say('Sorry, something went wrong. Please call back later.');
    res.type('text/xml');
    res.send(twiml.toString());
  }
});

app.listen(PORT, HOST, () => {
  console.log(`peer listening on ${HOST}:${PORT}`);
});
