"""Cross-modal prototype learning: per-cell LiDAR and camera embeddings predict each other's
prototype assignment (swapped prediction with Sinkhorn codes), plus an entropy (EM) loss."""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clap.config.config import configurable
from clap.layers import ShapeSpec

from .build import PROTOTYPE_HEAD_REGISTRY
from .diagnostics import assignment_perplexity
from .sinkhorn import sinkhorn_knopp


class _CellProjection(nn.Sequential):
    """Per-cell MLP, (N, C_in) -> (N, d_K): LayerNorm, Linear, LayerNorm, ReLU, Linear.

    The first LayerNorm makes the embedding independent of the scale of the cell features: the
    depth-distribution lift gives each cell about 1 / D of an image feature at initialisation
    (D depth bins), so without it the first Linear's bias outweighs the camera features and every
    camera cell starts with nearly the same embedding (docs/prototypes.md). LayerNorm (not
    BatchNorm) so that any number of cells, zero included, can be projected.
    """

    def __init__(self, in_channels: int, hidden_dim: int, embed_dim: int):
        super().__init__(
            nn.LayerNorm(in_channels),
            nn.Linear(in_channels, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, embed_dim),
        )


@PROTOTYPE_HEAD_REGISTRY.register()
class SwappedPrototypeHead(nn.Module):
    """Shared prototypes for LiDAR and camera cells, trained by swapped prediction and EM entropy.

    At every cell where both modalities carry data, the LiDAR feature (C_P) and the camera
    feature (C_I) are projected to d_K-dim unit vectors P and I. Their similarities to the N_K
    unit prototypes K are S_P = P K^T and S_I = I K^T (N, N_K). With p_X = softmax(S_X / tau),
    tau the assignment temperature:

    - EM entropy: L_EM = mean_cells( H(p_P) + H(p_I) ), H(p) = -sum_k p_k log p_k.
    - Swapped prediction: Q_P, Q_I = Sinkhorn(S_P), Sinkhorn(S_I) (detached; Sinkhorn
      temperature epsilon) and
      L_SwAV = mean_cells( -sum_k Q_I log p_P - sum_k Q_P log p_I ).

    The Gram term on K (`gram.py`) is not part of `forward`: `GramRegularizerHook` adds its
    gradient, and `PrototypeEMHook` keeps K on the unit sphere and tracks usage.

    In training mode the head remembers the last forward's hard assignments
    (`last_assignments`, detached) and writes recent embeddings into a ring buffer
    (`recent_embeddings`) for the hooks.
    """

    @configurable
    def __init__(
        self,
        *,
        lidar_channels: int,
        camera_channels: int,
        num_prototypes: int = 512,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        assignment_temperature: float = 0.1,
        sinkhorn_iters: int = 3,
        sinkhorn_temperature: float = 0.05,
        sinkhorn_queue_size: int = 0,
        swav_weight: float = 1.0,
        em_weight: float = 0.1,
        loss_weight: float = 1.0,
        max_paired_cells: int = 0,
        embedding_buffer_size: int = 4096,
    ):
        """
        Args:
            lidar_channels: C_P, channels of the LiDAR volume.
            camera_channels: C_I, channels of the camera volume.
            num_prototypes: N_K.
            embed_dim: d_K, embedding and prototype dimension.
            hidden_dim: hidden width of the two projection MLPs.
            assignment_temperature: tau of the assignment softmax p = softmax(S / tau), used by
                the EM entropy and as the prediction in the swapped loss.
            sinkhorn_iters: Sinkhorn-Knopp iterations of the swapped codes.
            sinkhorn_temperature: epsilon of the codes, exp(S / epsilon) before the
                equipartition (`sinkhorn_knopp`); smaller gives sharper codes.
            sinkhorn_queue_size: Q; in training, the Q most recent embeddings of earlier steps
                of the same modality (a first-in first-out queue per modality, `queue`) join
                the current cells in that modality's Sinkhorn equipartition, as in SwAV's queue;
                their codes are dropped. With far fewer paired cells than prototypes (heavy
                masking), equipartition over the cells alone gives near-uniform codes, which the
                swap loss then teaches the embeddings to match. 0 uses the current cells alone.
            swav_weight, em_weight: w_SwAV and w_EM.
            loss_weight: w_proto, multiplies both returned losses.
            max_paired_cells: at most this many paired cells per forward (drawn at random with
                torch's RNG); 0 uses every paired cell.
            embedding_buffer_size: rows of the ring buffer of recent unit embeddings (LiDAR and
                camera mixed) that dead prototypes are re-seeded from; 0 keeps none.
        """
        super().__init__()
        if num_prototypes < 2:
            raise ValueError(f"num_prototypes must be >= 2, got {num_prototypes}")
        for name, value in (("ASSIGNMENT_TEMPERATURE", assignment_temperature),
                            ("SINKHORN_TEMPERATURE", sinkhorn_temperature)):
            if value <= 0:
                raise ValueError(f"MODEL.PROTOTYPE_HEAD.{name} must be positive, got {value}")
        self.num_prototypes = num_prototypes
        self.embed_dim = embed_dim
        self.assignment_temperature = assignment_temperature
        self.sinkhorn_iters = sinkhorn_iters
        self.sinkhorn_temperature = sinkhorn_temperature
        self.sinkhorn_queue_size = sinkhorn_queue_size
        self.swav_weight = swav_weight
        self.em_weight = em_weight
        self.loss_weight = loss_weight
        self.max_paired_cells = max_paired_cells

        self.lidar_projection = _CellProjection(lidar_channels, hidden_dim, embed_dim)
        self.camera_projection = _CellProjection(camera_channels, hidden_dim, embed_dim)
        self.prototypes = nn.Parameter(F.normalize(torch.randn(num_prototypes, embed_dim), dim=1))

        self.register_buffer("recent_embeddings", torch.zeros(embedding_buffer_size, embed_dim))
        # Rows written into `recent_embeddings` since construction (ring position = count % size).
        self.register_buffer("recent_embeddings_written", torch.zeros((), dtype=torch.long))
        # Sinkhorn queue: (2, Q, d_K) LiDAR and camera unit embeddings of earlier steps, most
        # recent first, and how many rows of it are filled.
        self.register_buffer("queue", torch.zeros(2, sinkhorn_queue_size, embed_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.last_assignments: Optional[Dict[str, torch.Tensor]] = None

    @classmethod
    def from_config(cls, cfg, lidar_shape: ShapeSpec, camera_shape: ShapeSpec):
        head_cfg = cfg.MODEL.PROTOTYPE_HEAD
        return {
            "lidar_channels": lidar_shape.channels,
            "camera_channels": camera_shape.channels,
            "num_prototypes": head_cfg.NUM_PROTOTYPES,
            "embed_dim": head_cfg.EMBED_DIM,
            "hidden_dim": head_cfg.PROJ_HIDDEN_DIM,
            "assignment_temperature": head_cfg.ASSIGNMENT_TEMPERATURE,
            "sinkhorn_iters": head_cfg.SINKHORN_ITERS,
            "sinkhorn_temperature": head_cfg.SINKHORN_TEMPERATURE,
            "sinkhorn_queue_size": head_cfg.SINKHORN_QUEUE_SIZE,
            "swav_weight": head_cfg.SWAV_WEIGHT,
            "em_weight": head_cfg.EM_WEIGHT,
            "loss_weight": head_cfg.LOSS_WEIGHT,
            "max_paired_cells": head_cfg.MAX_PAIRED_CELLS,
            "embedding_buffer_size": head_cfg.EMBEDDING_BUFFER_SIZE,
        }

    def embed(
        self, lidar_volume: torch.Tensor, camera_volume: torch.Tensor, paired: torch.Tensor
    ):
        """Unit embeddings of the paired cells (subsampled to `max_paired_cells`).

        Args:
            lidar_volume: (B, C_P, Z, Y, X).
            camera_volume: (B, C_I, Z, Y, X).
            paired: (B, Z, Y, X) bool, True where both modalities carry data.

        Returns:
            lidar_embeddings (N, d_K), camera_embeddings (N, d_K), float32, unit rows, and
            cell_index (N, 2) long: (sample index, flat Z*Y*X cell index) of each row.
        """
        self._check_inputs(lidar_volume, camera_volume, paired)
        sample_index, cell_index = paired.flatten(1).nonzero(as_tuple=True)
        if self.max_paired_cells > 0 and sample_index.numel() > self.max_paired_cells:
            keep = torch.randperm(sample_index.numel(), device=sample_index.device)
            keep = keep[: self.max_paired_cells].sort().values
            sample_index, cell_index = sample_index[keep], cell_index[keep]
        # Indexing (B, C, Z*Y*X) with two index tensors around a slice gives (N, C).
        lidar_cells = lidar_volume.flatten(2)[sample_index, :, cell_index]
        camera_cells = camera_volume.flatten(2)[sample_index, :, cell_index]
        lidar_embeddings = F.normalize(self.lidar_projection(lidar_cells).float(), dim=1)
        camera_embeddings = F.normalize(self.camera_projection(camera_cells).float(), dim=1)
        return lidar_embeddings, camera_embeddings, torch.stack([sample_index, cell_index], 1)

    def forward(
        self, lidar_volume: torch.Tensor, camera_volume: torch.Tensor, paired: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Prototype losses and assignment statistics.

        Args:
            lidar_volume: (B, C_P, Z, Y, X) pre-fusion LiDAR volume P^.
            camera_volume: (B, C_I, Z, Y, X) pre-fusion camera volume I^ on the same grid.
            paired: (B, Z, Y, X) bool, True where both modalities carry data.

        Returns:
            dict with
            - "loss_swav": w_proto * w_SwAV * L_SwAV (scalar),
            - "loss_em": w_proto * w_EM * L_EM (scalar); both 0 and still connected to every
              parameter of the head when no cell is paired,
            - "num_paired_cells": (scalar long) cells used N,
            - "paired_cell_index": (N, 2) long (sample index, flat Z*Y*X cell index) per cell,
            - "assignment_lidar", "assignment_camera": (N,) long argmax prototype per cell,
            - "perplexity_lidar", "perplexity_camera": exp(entropy) of the hard-assignment
              histogram (0 when N = 0),
            - "agreement": fraction of cells whose two assignments are the same prototype.
            Only the "loss_*" entries carry gradients.
        """
        lidar_embeddings, camera_embeddings, cell_index = self.embed(
            lidar_volume, camera_volume, paired
        )
        num_cells = lidar_embeddings.shape[0]
        device_type = lidar_embeddings.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            prototypes = self.prototypes.float()
            similarity = torch.stack(
                [lidar_embeddings @ prototypes.t(), camera_embeddings @ prototypes.t()]
            )  # (2, N, N_K): LiDAR, camera
            log_probability = F.log_softmax(similarity / self.assignment_temperature, dim=-1)
            # Every rank runs Sinkhorn, also with N = 0, so the collective calls line up.
            codes = sinkhorn_knopp(
                self._with_queue(similarity, prototypes),
                self.sinkhorn_iters,
                self.sinkhorn_temperature,
            )[:, :num_cells]

            normaliser = float(max(num_cells, 1))
            entropy_sum = -(log_probability.exp() * log_probability).sum()
            loss_em = entropy_sum / normaliser
            # LiDAR predicts the camera code and the camera predicts the LiDAR code.
            swapped_cross_entropy = -(codes.flip(0) * log_probability).sum()
            loss_swav = swapped_cross_entropy / normaliser

        with torch.no_grad():
            assignment = similarity.argmax(dim=-1)  # (2, N)
            if self.training:
                self._remember(assignment, lidar_embeddings, camera_embeddings)
                self._enqueue(torch.stack([lidar_embeddings, camera_embeddings]).detach())
            agreement = (assignment[0] == assignment[1]).float().sum() / normaliser
        return {
            "loss_swav": self.loss_weight * self.swav_weight * loss_swav,
            "loss_em": self.loss_weight * self.em_weight * loss_em,
            "num_paired_cells": torch.tensor(num_cells, device=similarity.device),
            "paired_cell_index": cell_index,
            "assignment_lidar": assignment[0],
            "assignment_camera": assignment[1],
            "perplexity_lidar": assignment_perplexity(assignment[0], self.num_prototypes),
            "perplexity_camera": assignment_perplexity(assignment[1], self.num_prototypes),
            "agreement": agreement,
        }

    @torch.no_grad()
    def _with_queue(self, similarity: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """(2, N, N_K) similarities of the current cells, followed in training by those of the
        filled rows of each modality's queue: (2, N + Q', N_K). Only the first N rows' codes are
        used."""
        filled = int(self.queue_filled)
        if not self.training or filled == 0:
            return similarity
        queue_similarity = self.queue[:, :filled].float() @ prototypes.detach().t()
        return torch.cat([similarity, queue_similarity], dim=1)

    @torch.no_grad()
    def _enqueue(self, embeddings: torch.Tensor) -> None:
        """Push (2, N, d_K) embeddings to the front of the queue; the oldest rows fall out."""
        size = self.queue.shape[1]
        if size == 0 or embeddings.shape[1] == 0:
            return
        newest_first = embeddings.flip(1)[:, :size].to(self.queue.dtype)
        kept = size - newest_first.shape[1]
        self.queue.copy_(torch.cat([newest_first, self.queue[:, :kept]], dim=1))
        self.queue_filled.fill_(min(int(self.queue_filled) + newest_first.shape[1], size))

    @torch.no_grad()
    def _remember(self, assignment, lidar_embeddings, camera_embeddings) -> None:
        """Keep the hard assignments and write recent embeddings into the ring buffer."""
        self.last_assignments = {"lidar": assignment[0].detach(), "camera": assignment[1].detach()}
        buffer_size = self.recent_embeddings.shape[0]
        embeddings = torch.cat([lidar_embeddings, camera_embeddings]).detach()
        if buffer_size == 0 or embeddings.shape[0] == 0:
            return
        if embeddings.shape[0] > buffer_size:
            pick = torch.randperm(embeddings.shape[0], device=embeddings.device)[:buffer_size]
            embeddings = embeddings[pick]
        start = int(self.recent_embeddings_written) % buffer_size
        rows = (start + torch.arange(embeddings.shape[0], device=embeddings.device)) % buffer_size
        self.recent_embeddings[rows] = embeddings.to(self.recent_embeddings.dtype)
        self.recent_embeddings_written += embeddings.shape[0]

    def stored_embeddings(self) -> torch.Tensor:
        """(M, d_K) the filled rows of the recent-embedding ring buffer (unit vectors)."""
        filled = min(int(self.recent_embeddings_written), self.recent_embeddings.shape[0])
        return self.recent_embeddings[:filled]

    @staticmethod
    def _check_inputs(lidar_volume, camera_volume, paired) -> None:
        if lidar_volume.dim() != 5 or camera_volume.dim() != 5:
            raise ValueError(
                "SwappedPrototypeHead expects lidar_volume (B, C_P, Z, Y, X) and camera_volume "
                f"(B, C_I, Z, Y, X), got {tuple(lidar_volume.shape)} and "
                f"{tuple(camera_volume.shape)}"
            )
        grid = (lidar_volume.shape[0],) + tuple(lidar_volume.shape[2:])
        camera_grid = (camera_volume.shape[0],) + tuple(camera_volume.shape[2:])
        if camera_grid != grid or tuple(paired.shape) != grid:
            raise ValueError(
                f"SwappedPrototypeHead: lidar_volume (B, Z, Y, X) = {grid}, camera_volume "
                f"{camera_grid} and paired mask {tuple(paired.shape)} must agree"
            )
        if paired.dtype != torch.bool:
            raise ValueError(f"SwappedPrototypeHead: `paired` must be bool, got {paired.dtype}")
