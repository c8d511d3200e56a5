"""The reference's PyTorch training iteration and generator, timed on this machine (needs torch).

  python -m benchmarks.reference_pytorch --crop_size=128 [--steps=5 --warmup=2]

prints one JSON line with the same keys as `python main.py --mode=benchmark`
(train_images_per_sec, step_ms, generator_images_per_sec, peak_rss_mb, ...), for the
side-by-side table of benchmarks/suite.py.
"""

import argparse
import json
import statistics
import sys

import torch

from benchmarks import reference_torch as ref
from cyclegan_tf import hardware


def reference_pytorch(crop_size=128, batch_size=1, warmup=2, measured=5, generator_steps=5,
                      netG='resnet_9blocks', ngf=64, ndf=64, threads=None):
  """The reference's training iteration, timed like --mode=benchmark, on THIS machine.

  The networks are reference_torch.py's faithful copies of the reference's classes; the
  iteration is the reference's optimize_parameters() (lsgan, identity 0.5, instance norm, two
  Adams, a filling image pool, i.e. the new images). Ratios are only meaningful against a run
  of ours on the same machine under the same load.
  """
  if threads:
    torch.set_num_threads(threads)
  load_before = hardware.load_average()
  torch.manual_seed(0)
  g_a, g_b = (ref.define_G(3, 3, ngf, netG, 'instance') for _ in range(2))
  d_a, d_b = (ref.define_D(3, ndf, 'basic', norm='instance') for _ in range(2))
  for net in (g_a, g_b, d_a, d_b):
    for m in net.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
          torch.nn.init.zeros_(m.bias)
  opt_g = torch.optim.Adam(list(g_a.parameters()) + list(g_b.parameters()), 2e-4,
                           betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), 2e-4,
                           betas=(0.5, 0.999))
  mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()
  gan = lambda pred, real: mse(pred, torch.full_like(pred, 1.0 if real else 0.0))
  real_a = torch.rand(batch_size, 3, crop_size, crop_size) * 2 - 1
  real_b = torch.rand(batch_size, 3, crop_size, crop_size) * 2 - 1

  def iteration():
    fake_b = g_a(real_a)
    rec_a = g_b(fake_b)
    fake_a = g_b(real_b)
    rec_b = g_a(fake_a)
    for p in list(d_a.parameters()) + list(d_b.parameters()):
      p.requires_grad_(False)
    opt_g.zero_grad()
    idt_a, idt_b = g_a(real_b), g_b(real_a)
    loss_g = (l1(idt_a, real_b) * 5.0 + l1(idt_b, real_a) * 5.0 + gan(d_a(fake_b), True) +
              gan(d_b(fake_a), True) + l1(rec_a, real_a) * 10.0 + l1(rec_b, real_b) * 10.0)
    loss_g.backward()
    opt_g.step()
    for p in list(d_a.parameters()) + list(d_b.parameters()):
      p.requires_grad_(True)
    opt_d.zero_grad()
    loss_d_a = 0.5 * (gan(d_a(real_b), True) + gan(d_a(fake_b.detach()), False))
    loss_d_a.backward()
    loss_d_b = 0.5 * (gan(d_b(real_a), True) + gan(d_b(fake_a.detach()), False))
    loss_d_b.backward()
    opt_d.step()

  step_times = hardware.time_calls(iteration, warmup, measured)
  g_a.eval()

  def forward():
    with torch.no_grad():
      g_a(real_a)
  gen_times = hardware.time_calls(forward, 1, generator_steps)
  step, gen = statistics.median(step_times), statistics.median(gen_times)
  return {
      'implementation': 'reference_pytorch',
      'train_images_per_sec': round(batch_size / step, 4),
      'generator_images_per_sec': round(batch_size / gen, 4),
      'step_ms': round(1e3 * step, 2),
      'step_ms_min': round(1e3 * min(step_times), 2),
      'step_ms_max': round(1e3 * max(step_times), 2),
      'generator_ms': round(1e3 * gen, 2),
      'peak_rss_mb': round(hardware.peak_rss_mb(), 1),
      'device': f'CPU {hardware.cpu_description()}',
      'precision': 'float32',
      'strategy': 'default',
      'batch_size': batch_size,
      'crop_size': crop_size,
      'netG': netG,
      'ngf': ngf,
      'torch_threads': torch.get_num_threads(),
      'warmup_steps': warmup,
      'measured_steps': measured,
      'load_avg_before': load_before,
      'load_avg_after': hardware.load_average(),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--crop_size', type=int, default=128)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--threads', type=int, default=0, help='0: torch\'s default')
  args = parser.parse_args(argv)
  result = reference_pytorch(args.crop_size, warmup=args.warmup, measured=args.steps,
                             generator_steps=args.steps, threads=args.threads or None)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  sys.exit(main())
